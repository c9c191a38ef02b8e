-- release: end one hold in Redis, so its space can be grabbed again.
--
--   KEYS[1]  meta hash (its version is bumped)
--   KEYS[2]  spaces hash: label -> bitmap position
--   KEYS[3]  taken: availability bitmap
--   KEYS[4]  holders hash: label -> hold id
--   KEYS[5]  counts hash: registration number -> live holds
--   ARGV[1]  space label
--   ARGV[2]  hold id that must currently hold the space
--   ARGV[3]  registration number of that hold's buyer
--
-- Returns 1 when the space was released, 0 when that hold no longer holds
-- it (already released, or the sale was re-armed), so calling twice is safe.

if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
    return 0
end
redis.call('HDEL', KEYS[4], ARGV[1])
local position = redis.call('HGET', KEYS[2], ARGV[1])
if position then
    redis.call('SETBIT', KEYS[3], position, 0)
end
if tonumber(redis.call('HINCRBY', KEYS[5], ARGV[3], -1)) < 0 then
    redis.call('HSET', KEYS[5], ARGV[3], 0)
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
