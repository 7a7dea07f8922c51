-- Shared by every scenario script: counts responses per status in each wrk thread and, when the
-- run ends, prints ONE line "WRK_JSON {...}" with throughput, latency percentiles (microseconds)
-- and the status counts, so bench_http.py parses JSON instead of wrk's human-readable text.
--
-- A scenario script loads this file first (dofile), then defines init/request and may extend
-- the per-thread counters through the global `extra` table (summed across threads by name).

local threads = {}

-- Pacing (optional): with WRK_THREAD_RATE=r (requests/s per wrk thread) each thread hands out
-- evenly spaced send slots to whichever of its connections is free, so the run offers a fixed
-- load instead of saturating the server. Latency is still measured from the actual send.
local rate = tonumber(os.getenv("WRK_THREAD_RATE") or "0") or 0
if rate > 0 then
  local ffi = require("ffi")
  pcall(ffi.cdef, [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]])
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local next_slot = nil

  function delay()
    local now = now_ms()
    -- Behind schedule (every connection was busy): start again from now, no burst to catch up.
    local slot = (next_slot and next_slot > now) and next_slot or now
    next_slot = slot + interval
    return slot - now
  end
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

statuses = {}
extra = {}

function count_status(status)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Scenarios that do not read the body use this; it keeps the Lua work per response minimal.
function response(status, headers, body)
  count_status(status)
end

local function encode(value)
  if type(value) == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, string.format("%q:%s", tostring(k), encode(v)))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(value) == "number" then
    if value ~= value or value == math.huge or value == -math.huge then
      return "null"
    end
    return string.format("%.17g", value)
  else
    return string.format("%q", tostring(value))
  end
end

function done(summary, latency, requests)
  local total_statuses, total_extra = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      local key = tostring(status)
      total_statuses[key] = (total_statuses[key] or 0) + n
    end
    for name, n in pairs(thread:get("extra") or {}) do
      total_extra[name] = (total_extra[name] or 0) + n
    end
  end
  local result = {
    requests = summary.requests,
    duration_us = summary.duration,
    bytes = summary.bytes,
    errors = {
      connect = summary.errors.connect,
      read = summary.errors.read,
      write = summary.errors.write,
      status = summary.errors.status,
      timeout = summary.errors.timeout,
    },
    latency_us = {
      mean = latency.mean,
      stdev = latency.stdev,
      max = latency.max,
      p50 = latency:percentile(50),
      p90 = latency:percentile(90),
      p99 = latency:percentile(99),
      p999 = latency:percentile(99.9),
    },
    statuses = total_statuses,
    extra = total_extra,
  }
  io.write("WRK_JSON ", encode(result), "\n")
end
