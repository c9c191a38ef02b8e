-- offer: hand the space of an ended hold straight to one waiting registrant.
--
-- The space stays marked taken in the availability bitmap; only its holder
-- changes. The new hold is appended to the grant stream like a grab, so the
-- persister records it even if the caller dies before writing Postgres.
--
-- All keys belong to one sale and share its hash tag "{sale:<id>}".
--   KEYS[1]  meta hash: seq (last hold sequence number), version, generation
--   KEYS[2]  holders hash: label -> hold id
--   KEYS[3]  limits hash: registration number -> spaces allowed
--   KEYS[4]  counts hash: registration number -> live holds
--   KEYS[5]  grants stream: one entry per granted hold (the outbox)
--   ARGV[1]  sale id
--   ARGV[2]  space label
--   ARGV[3]  hold id that must currently hold the space (the ended hold)
--   ARGV[4]  registration number of the ended hold's buyer
--   ARGV[5]  registration number of the waiting registrant
--   ARGV[6]  how long the offer lasts, milliseconds
--
-- Time comes from Redis (TIME), in milliseconds. The sale's state and
-- window are not checked: offers are made by the office after the launch.
--
-- Returns an array whose first element is the outcome:
--   {"granted", hold_id, granted_ms, deadline_ms}
--   {"not_holder"}      the ended hold no longer holds the space (already
--                       released or offered), so nothing changed
--   {"not_registered"}  the waiting registrant is not loaded for this sale
--   {"limit_reached"}   the waiting registrant holds their limit already
--   {"not_armed"}       the sale is not loaded in Redis

if redis.call('EXISTS', KEYS[1]) == 0 then
    return {'not_armed'}
end
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
    return {'not_holder'}
end

local buyer = ARGV[5]
local limit = redis.call('HGET', KEYS[3], buyer)
if not limit then
    return {'not_registered'}
end
if tonumber(redis.call('HGET', KEYS[4], buyer) or '0') >= tonumber(limit) then
    return {'limit_reached'}
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_text = string.format('%d', now)
local deadline = string.format('%d', now + tonumber(ARGV[6]))

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local hold_id = ARGV[1] .. '-' .. seq
redis.call('HSET', KEYS[2], ARGV[2], hold_id)
if tonumber(redis.call('HINCRBY', KEYS[4], ARGV[4], -1)) < 0 then
    redis.call('HSET', KEYS[4], ARGV[4], 0)
end
redis.call('HINCRBY', KEYS[4], buyer, 1)
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('XADD', KEYS[5], '*',
    'hold', hold_id, 'label', ARGV[2], 'buyer', buyer,
    'granted_ms', now_text, 'deadline_ms', deadline,
    'generation', redis.call('HGET', KEYS[1], 'generation'))
return {'granted', hold_id, now_text, deadline}
