-- Scenario "collect": POST /v1/collect with batches of 5 events, as the snippet sends them.
--
-- Every request carries new client event ids (run nonce, thread id, per-thread counter), so the
-- server's dedupe never short-circuits the work; visitors come from a per-thread pool so that a
-- visitor sends several batches, as in real browsing. Half of the requests are text/plain
-- (navigator.sendBeacon), half application/json (fetch).
--
-- wrk args (after --): SITE_KEY NONCE PRODUCT_IDS(comma-separated) [VISITORS_PER_THREAD]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local site, nonce, products, pool
local counter = 0
local now_ms
local body_format, heads

-- The whole body is one string.format over a template made once in init(), and the request
-- head is a prefix made once per content type: wrk's own Lua shares the 2 cores with the
-- server, and building each request from tables (wrk.format) cost it about 35 us more than the
-- floor's prebuilt request.
function init(args)
  site, nonce = args[1], args[2]
  products = {}
  for pid in string.gmatch(args[3] or "", "[^,]+") do
    table.insert(products, pid)
  end
  pool = tonumber(args[4] or "2000")
  now_ms = os.time() * 1000
  math.randomseed(id * 7919 + os.time())
  extra = { accepted = 0, duplicates = 0, unparsed = 0 }
  local ev = '{"id":"%s-%d-%d-%d","type":"%s","ts":%d,"product_id":"%s"}'
  body_format = '{"site":"' .. site .. '","visitor":"wrk-' .. nonce .. '-%d-%d","events":['
    .. '{"id":"%s-%d-%d-0","type":"page_view","ts":%d,"url":"https://shop.example/p/%s","page_type":"product"},'
    .. ev .. ',' .. ev .. ',' .. ev .. ',' .. ev .. ']}'
  local host = wrk.headers["Host"]
  local function head(content_type)
    return "POST /v1/collect HTTP/1.1\r\nHost: " .. host .. "\r\nContent-Type: " .. content_type
      .. "\r\nContent-Length: "
  end
  heads = { [0] = head("text/plain;charset=UTF-8"), [1] = head("application/json") }
end

function request()
  counter = counter + 1
  local ts = now_ms + counter
  local n = #products
  local pid = products[math.random(n)]
  local last = (counter % 4 == 0) and "add_to_cart" or "product_view"
  local body = string.format(body_format,
    id, counter % pool,
    nonce, id, counter, ts, pid,
    nonce, id, counter, 1, "product_view", ts + 1, pid,
    nonce, id, counter, 2, "product_view", ts + 2, products[math.random(n)],
    nonce, id, counter, 3, "product_view", ts + 3, products[math.random(n)],
    nonce, id, counter, 4, last, ts + 4, pid)
  return heads[counter % 2] .. #body .. "\r\n\r\n" .. body
end

function response(status, headers, body)
  count_status(status)
  if status == 200 then
    local accepted = body:match('"accepted":%s*(%d+)')
    local duplicates = body:match('"duplicates":%s*(%d+)')
    if accepted then
      extra.accepted = extra.accepted + tonumber(accepted)
      extra.duplicates = extra.duplicates + tonumber(duplicates or "0")
    else
      extra.unparsed = extra.unparsed + 1
    end
  end
end
