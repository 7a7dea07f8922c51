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
local json_headers = { ["Content-Type"] = "application/json" }
local beacon_headers = { ["Content-Type"] = "text/plain;charset=UTF-8" }

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
end

local function event(eid, etype, pid, ts)
  if etype == "page_view" then
    return string.format(
      '{"id":"%s","type":"page_view","ts":%d,"url":"https://shop.example/p/%s","page_type":"product"}',
      eid, ts, pid)
  end
  return string.format('{"id":"%s","type":"%s","ts":%d,"product_id":"%s"}', eid, etype, ts, pid)
end

function request()
  counter = counter + 1
  local visitor = string.format("wrk-%s-%d-%d", nonce, id, counter % pool)
  local base = string.format("%s-%d-%d", nonce, id, counter)
  local ts = now_ms + counter
  local pid = products[math.random(#products)]
  local last = (counter % 4 == 0) and "add_to_cart" or "product_view"
  local events = {
    event(base .. "-0", "page_view", pid, ts),
    event(base .. "-1", "product_view", pid, ts + 1),
    event(base .. "-2", "product_view", products[math.random(#products)], ts + 2),
    event(base .. "-3", "product_view", products[math.random(#products)], ts + 3),
    event(base .. "-4", last, pid, ts + 4),
  }
  local body = string.format('{"site":"%s","visitor":"%s","events":[%s]}',
    site, visitor, table.concat(events, ","))
  local headers = (counter % 2 == 0) and beacon_headers or json_headers
  return wrk.format("POST", "/v1/collect", headers, body)
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
