-- Scenario "recommend": GET /v1/recommend?site=...&visitor=...&n=3 over many distinct visitors.
--
-- Half of the visitors are the simulator's (they have live profiles: affinities, cart, purchases),
-- half are new anonymous ids (no profile, popularity only). Each 200 is checked for n offers.
--
-- wrk args (after --): SITE_KEY NONCE SIM_PREFIX SIM_VISITORS [N]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local site, nonce, prefix, known, n
local counter = 0
local head, tail, anon

-- The request line's fixed parts are made once in init(): wrk's Lua shares the 2 cores with the
-- server, so the load generator should cost no more per request than it must.

function init(args)
  site, nonce, prefix = args[1], args[2], args[3]
  known = tonumber(args[4] or "1")
  n = tonumber(args[5] or "3")
  math.randomseed(id * 104729 + os.time())
  extra = { profiled = 0, anonymous = 0, short = 0 }
  head = "GET /v1/recommend?site=" .. site .. "&n=" .. n .. "&visitor="
  tail = " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
  anon = "anon-" .. nonce .. "-" .. id .. "-"
end

function request()
  counter = counter + 1
  local visitor
  if counter % 2 == 0 then
    visitor = prefix .. tostring(math.random(0, known - 1))
    extra.profiled = extra.profiled + 1
  else
    visitor = anon .. counter
    extra.anonymous = extra.anonymous + 1
  end
  return head .. visitor .. tail
end

function response(status, headers, body)
  count_status(status)
  if status == 200 then
    local _, offers = body:gsub('"product_id"', "")
    if offers < n then
      extra.short = extra.short + 1
    end
  end
end
