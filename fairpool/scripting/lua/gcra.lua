-- fairpool gcra: the generic cell rate algorithm (as in redis-cell / go-redis redis_rate).
--
-- KEYS[1]  a string: the theoretical arrival time (TAT), integer microseconds since 2017-01-01
-- ARGV[1]  emission interval in microseconds: period / rate (> 0)
-- ARGV[2]  burst: how many requests may arrive at once (>= 1)
-- ARGV[3]  cost: requests in this call (>= 1)
--
-- Returns {allowed, remaining, retry_after_micros, reset_after_micros}, all integers:
--   allowed      cost when allowed, else 0
--   remaining    requests still allowed right now
--   retry_after  microseconds until this request would be allowed (0 when allowed)
--   reset_after  microseconds until the limiter is back to a full burst
-- The TAT is written only when allowed, with a PX expiry of reset_after. O(1).
-- prelude.lua comes first (effects replication); ratelimit.py joins the two.
local key = KEYS[1]
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

-- Shift the epoch to 2017-01-01 so that microsecond timestamps stay far from 2^53.
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1483228800) * 1000000 + tonumber(t[2])

local stored = redis.call('GET', key)
local tat = stored and tonumber(stored)
if not tat or tat < now then
  tat = now
end

local new_tat = tat + emission * cost
local allow_at = new_tat - emission * burst
local diff = now - allow_at

if diff < 0 then
  return {0, 0, math.ceil(-diff), math.ceil(tat - now)}
end

local reset_after = new_tat - now
local ttl_ms = math.ceil(reset_after / 1000)
if ttl_ms > 0 then
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', ttl_ms)
end
return {cost, math.floor(diff / emission), 0, math.ceil(reset_after)}
