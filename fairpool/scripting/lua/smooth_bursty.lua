-- fairpool smooth_bursty: Guava's SmoothBursty rate limiter (RateLimiter.create(rate)) in one key.
--
-- KEYS[1]  a hash: next_free_micros (integer, server clock), stored_permits (double)
-- ARGV[1]  rate: permits per second (> 0)
-- ARGV[2]  max_permits: rate * burst_seconds, the cap on stored permits (>= 0)
-- ARGV[3]  permits to take (>= 1)
-- ARGV[4]  timeout in microseconds for a try-acquire, or -1 to always reserve
--
-- Returns the microseconds the caller must wait before using the permits (an integer >= 0),
-- or -1 when a try-acquire gives up: the wait would exceed the timeout. Nothing is written then.
--
-- Like Guava: stored permits (saved up while idle, at most max_permits) are spent first and cost
-- no wait; fresh permits push next_free_micros forward by permits / rate, and that cost is paid
-- by the *next* caller (this one waits only until the old next_free_micros). A new key starts
-- with no stored permits and next_free = now, like a freshly created Guava RateLimiter.
-- O(1): one HMGET, one HSET, one PEXPIRE.
-- prelude.lua comes first (effects replication); ratelimit.py joins the two.
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local max_permits = tonumber(ARGV[2])
local permits = tonumber(ARGV[3])
local timeout = tonumber(ARGV[4])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate

local state = redis.call('HMGET', key, 'next_free_micros', 'stored_permits')
local next_free = tonumber(state[1])
local stored = tonumber(state[2])
if next_free == nil or stored == nil then
  next_free = now
  stored = 0
end

-- tryAcquire: give up, reserving nothing, when the permits would not be free within the timeout.
if timeout >= 0 and next_free - timeout > now then
  return -1
end

-- resync: permits saved up since next_free, capped at max_permits.
if now > next_free then
  stored = math.min(max_permits, stored + (now - next_free) / interval)
  next_free = now
end

-- reserveEarliestAvailable: this caller waits until the current next_free.
local moment = next_free
local spend = math.min(permits, stored)
local fresh = permits - spend
next_free = next_free + math.floor(fresh * interval)
stored = stored - spend

redis.call('HSET', key,
  'next_free_micros', string.format('%.0f', next_free),
  'stored_permits', string.format('%.17g', stored))
-- Keep the state while it matters: until next_free, plus a full refill, plus a second.
redis.call('PEXPIRE', key, math.ceil((next_free - now + max_permits * interval) / 1000) + 1000)

local wait = moment - now
if wait < 0 then
  wait = 0
end
return wait
