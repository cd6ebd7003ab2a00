-- wrk (4.x, LuaJIT) script for benchmarks.generators.wrk: one POST per line of a credentials
-- file, each line used once, so every request carries a fresh code, refresh token or client
-- assertion.
--
--   wrk -t T -c C -d 1s -s wrk_token.lua URL -- PREFIX [repeat]
--
-- Thread i reads PREFIX<i>.txt; a line is "<Basic credentials or empty>\t<form body>", with
-- "\t<DPoP proof>" after it for cc_dpop (sent as a `DPoP:` header; a form body and a JWT
-- never hold a tab). A thread
-- that runs out of lines stops sending (and says so): a line is never sent twice. With
-- "repeat" (client_credentials with a secret or with a reused workload token, the floor:
-- nothing is spent) the first line is sent each time. `done` prints, on lines starting with
-- "BENCH ", wrk's totals, each thread's lines used, status counts and `error` codes, and
-- wrk's latency histogram read straight from its C struct (exact, in µs; still with wrk's
-- coordinated-omission "correction", which the Python side takes back out).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { int64_t tv_sec; int64_t tv_usec; } bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
typedef struct { uint64_t count, limit, min, max; uint64_t data[?]; } bench_stats;
]]

local timeval = ffi.new("bench_timeval")
local function now_us()
  ffi.C.gettimeofday(timeval, nil)
  return tonumber(timeval.tv_sec) * 1000000 + tonumber(timeval.tv_usec)
end

local threads = {}
local created = 0

function setup(thread)
  created = created + 1
  thread:set("tid", created)
  table.insert(threads, thread)
end

local file, with_auth, without_auth, head, form

local repeated = nil  -- "repeat" mode: one line, sent again and again (nothing to spend)

function init(args)
  file = assert(io.open(args[1] .. tid .. ".txt", "r"))
  used = 0
  statuses = {}
  errors = {}
  started_us = now_us()
  exhausted_us = -1
  local host = wrk.headers["Host"]
  head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n"
  form = "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
  with_auth = head .. "Authorization: Basic "
  without_auth = head .. form
  form_after_auth = "\r\n" .. form
  if args[2] == "repeat" then
    repeated = build(assert(file:read("*l")))
  end
end

function build(line)
  local tab = line:find("\t", 1, true)
  local auth, body = line:sub(1, tab - 1), line:sub(tab + 1)
  local proof = body:find("\t", 1, true)
  if proof then  -- cc_dpop: the baseline's request plus the proof's header
    body, proof = body:sub(1, proof - 1), body:sub(proof + 1)
    local start = auth == "" and head or (with_auth .. auth .. "\r\n")
    return start .. "DPoP: " .. proof .. "\r\n" .. form .. #body .. "\r\n\r\n" .. body
  end
  if auth == "" then
    return without_auth .. #body .. "\r\n\r\n" .. body
  end
  return with_auth .. auth .. form_after_auth .. #body .. "\r\n\r\n" .. body
end

function request()
  if repeated then
    used = used + 1
    return repeated
  end
  local line = file:read("*l")
  if line == nil then
    if exhausted_us < 0 then exhausted_us = now_us() - started_us end
    wrk.thread:stop()
    return ""
  end
  used = used + 1
  return build(line)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= 200 then
    local code = body:match('"error"%s*:%s*"([^"]*)"') or "-"
    local key = status .. " " .. code
    errors[key] = (errors[key] or 0) + 1
  elseif not body:find('"access_token"%s*:%s*"[%w_-]+%.[%w_-]+%.[%w_-]+"') then
    -- a 200 without a JWT access token is not served (generators/common.py: NO_JWT)
    errors["200 no_jwt_access_token"] = (errors["200 no_jwt_access_token"] or 0) + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH summary %d %d %d %d %d %d %d %d\n", summary.duration,
    summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
  for _, t in ipairs(threads) do
    io.write(string.format("BENCH thread %d %d %d\n", t:get("tid"), t:get("used"),
      t:get("exhausted_us")))
    for status, n in pairs(t:get("statuses")) do
      io.write(string.format("BENCH status %d %d\n", status, n))
    end
    for key, n in pairs(t:get("errors")) do
      io.write(string.format("BENCH error %d %s\n", n, key))
    end
  end
  local parts = {}
  local ok, stats = pcall(function() return ffi.cast("bench_stats **", latency)[0] end)
  if ok then
    for v = tonumber(stats.min), tonumber(stats.max) do
      local n = tonumber(stats.data[v])
      if n > 0 then parts[#parts + 1] = v .. ":" .. n end
      if #parts == 256 then io.write("BENCH hist ", table.concat(parts, " "), "\n"); parts = {} end
    end
  else
    for i = 1, #latency do
      local v, n = latency(i)
      parts[#parts + 1] = v .. ":" .. n
      if #parts == 256 then io.write("BENCH hist ", table.concat(parts, " "), "\n"); parts = {} end
    end
  end
  if #parts > 0 then io.write("BENCH hist ", table.concat(parts, " "), "\n") end
end
