-- remember: store the outcome that a worker's view decided for a click, if
-- the grab script would decide the same now.
--
--   KEYS[1]  meta hash: generation, state, opens_ms, closes_ms
--   KEYS[2]  taken: availability bitmap, bit set = held
--   KEYS[3]  counts hash: registration number -> live holds
--   KEYS[4]  idempotency key of the click (string)
--   ARGV[1]  generation the view was read from
--   ARGV[2]  the outcome, as grab.lua stores it (JSON, e.g. ["space_taken"])
--   ARGV[3]  idempotency time to live, seconds
--   ARGV[4]  registration number of the buyer
--   ARGV[5]  "0" for space_taken; for limit_reached, the buyer's limit
--   ARGV[6..] bitmap positions of the requested spaces (for space_taken)
--
-- The checks follow grab.lua's order. The view has seen the buyer
-- registered and every space existing in this generation, and both stay
-- true until the sale is armed again. So "space_taken" holds when the buyer
-- holds nothing and every space is held, and "limit_reached" holds when the
-- buyer holds their limit.
--
-- Returns:
--   {"replay", <stored reply>}  the key was decided first by another request
--   {"stored"}                  the outcome is now the key's first answer
--   {"ask"}                     the sale or the spaces changed: run grab.lua

local cached = redis.call('GET', KEYS[4])
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
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
local limit = tonumber(ARGV[5])
if limit == 0 then
    if held > 0 then
        return {'ask'}
    end
    for i = 6, #ARGV do
        if redis.call('GETBIT', KEYS[2], ARGV[i]) == 0 then
            return {'ask'}
        end
    end
elseif held < limit then
    return {'ask'}
end
redis.call('SET', KEYS[4], ARGV[2], 'EX', ARGV[3])
return {'stored'}
