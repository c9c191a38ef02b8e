-- set_state: pause, resume or close an armed sale in one step.
--
--   KEYS[1]  meta hash of the sale
--   ARGV[1]  new state: "armed", "paused" or "closed"
--
-- Returns 1 when the state was set, 0 when the sale is not armed in Redis.
-- The availability version is bumped so clients see the change at once.

if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
