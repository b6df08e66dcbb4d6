-- fairpool's rate-limit scripts: the lines that start each one (fairpool/scripting/ratelimit.py
-- puts them before the script's own).
-- Before Redis 5 a write after TIME needs effects replication; from 7.0 the call is a no-op.
if redis.replicate_commands then
  redis.replicate_commands()
end

