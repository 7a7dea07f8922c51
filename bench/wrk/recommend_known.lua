-- Scenario "recommend, identified": GET /v1/recommend for visitors read from a file, one id a
-- line (the bench writes the ids of visitors linked to a CRM customer). Each 200 is checked for
-- n offers and counted when it says it came from the model.
--
-- wrk args (after --): SITE_KEY IDS_FILE [N]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}
local n
local head, tail

function init(args)
  local site, path = args[1], args[2]
  n = tonumber(args[3] or "3")
  for line in io.lines(path) do
    if #line > 0 then
      table.insert(ids, line)
    end
  end
  math.randomseed(id * 7919 + os.time())
  extra = { short = 0, model = 0 }
  head = "GET /v1/recommend?site=" .. site .. "&n=" .. n .. "&visitor="
  tail = " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
end

function request()
  return head .. ids[math.random(1, #ids)] .. tail
end

function response(status, headers, body)
  count_status(status)
  if status == 200 then
    local _, offers = body:gsub('"product_id"', "")
    if offers < n then
      extra.short = extra.short + 1
    end
    if body:find('"source":"model:', 1, true) then
      extra.model = extra.model + 1
    end
  end
end
