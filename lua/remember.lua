-- remember: store the outcome a worker's view decided for a click, if the
-- sale is still as the view saw it.
--
--   KEYS[1]  meta hash: generation, state, opens_ms, closes_ms
--   KEYS[2]  idempotency key of the click (string)
--   ARGV[1]  generation the view was read from
--   ARGV[2]  the outcome, as grab.lua stores it (JSON, e.g. ["space_taken"])
--   ARGV[3]  idempotency time to live, seconds
--
-- Returns:
--   {"replay", <stored reply>}  the key was answered first by someone else
--   {"stored"}                  the outcome is now the key's first answer
--   {"ask"}                     the sale was armed again, paused, closed or
--                               is outside its window: run grab.lua instead

local cached = redis.call('GET', KEYS[2])
if cached then
    return {'replay', cached}
end
local meta = redis.call('HMGET', KEYS[1], 'generation', 'state', 'opens_ms', 'closes_ms')
if meta[1] ~= ARGV[1] or meta[2] ~= 'armed' then
    return {'ask'}
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now < tonumber(meta[3]) or now >= tonumber(meta[4]) then
    return {'ask'}
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return {'stored'}
