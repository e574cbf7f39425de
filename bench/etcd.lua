-- wrk script for etcd's v3 JSON gateway (bench/run). Arguments after "--":
--   put        distinct new keys, 100-byte values (W1, W1f, W2)
--   load       keys r0..r1999, for the reads
--   load_j     keys j0..j9999, for the join (J1); one thread only
--   get        linearizable reads of r0..r1999 (R1)
--   get_s      serializable reads (R1l)
-- Prints one WRKRESULT line with the median and p99 latency in us.
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local op, tid, counter, value
function init(args)
  op = args[1] or "put"
  counter = 0
  value = b64(string.rep("v", 100))
end

function request()
  counter = counter + 1
  local t = tid or 0
  if op == "put" or op == "load" or op == "load_j" then
    local key
    if op == "put" then
      key = "k" .. t .. "-" .. counter .. "-" .. math.random(1000000000)
    elseif op == "load_j" then
      key = "j" .. (counter % 10000)
    else
      key = "r" .. (counter % 2000)
    end
    local body = '{"key":"' .. b64(key) .. '","value":"' .. value .. '"}'
    return wrk.format("POST", "/v3/kv/put", nil, body)
  end
  local ser = op == "get_s" and ',"serializable":true' or ""
  local body = '{"key":"' .. b64("r" .. (counter % 2000)) .. '"' .. ser .. "}"
  return wrk.format("POST", "/v3/kv/range", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("WRKRESULT median_us=%d p99_us=%d requests=%d duration_us=%d errors=%d\n",
    latency:percentile(50), latency:percentile(99), summary.requests,
    summary.duration, summary.errors.status + summary.errors.connect +
    summary.errors.read + summary.errors.write + summary.errors.timeout))
end
