-- Scenario "floor": GET the trivial Flask route (bench/floor_app.py).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local req

function init(args)
  req = wrk.format("GET", args[1] or "/floor")
end

function request()
  return req
end
