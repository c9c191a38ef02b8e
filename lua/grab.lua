-- grab: hold the first free space of a ranked list for one registrant.
--
-- All keys belong to one sale and share its hash tag "{sale:<id>}".
--   KEYS[1]  meta hash: state, opens_ms, closes_ms, payment_ms, generation,
--            seq (last hold sequence number), version (availability version)
--   KEYS[2]  spaces hash: label -> position in the availability bitmap
--   KEYS[3]  taken: availability bitmap, bit set = held
--   KEYS[4]  holders hash: label -> hold id
--   KEYS[5]  limits hash: registration number -> spaces allowed
--   KEYS[6]  counts hash: registration number -> live holds
--   KEYS[7]  grants stream: one entry per granted hold (the outbox)
--   KEYS[8]  idempotency key of this request (string)
--   ARGV[1]  sale id
--   ARGV[2]  registration number
--   ARGV[3]  idempotency time to live, seconds
--   ARGV[4..8] space labels in order of preference (1 to 5)
--
-- Time comes from Redis (TIME), in milliseconds. The window is
-- opens_ms <= now < closes_ms.
--
-- Returns an array whose first element is the outcome:
--   {"granted", hold_id, label, granted_ms, deadline_ms}
--   {"space_taken"} every listed space is held
--   {"limit_reached", limit}
--   {"unknown_space", label}
--   {"not_registered"}
--   {"sale_not_open", opens_ms, now_ms}   not stored: a retry may succeed
--   {"sale_paused"}                       not stored, as above
--   {"sale_closed"}
--   {"not_armed"}                         the sale is not loaded in Redis
-- The first reply for an idempotency key is stored and every repeat returns
-- {"replay", <the stored reply as JSON>} and changes nothing.

local cached = redis.call('GET', KEYS[8])
if cached then
    return {'replay', cached}
end

local meta = redis.call('HMGET', KEYS[1],
    'state', 'opens_ms', 'closes_ms', 'payment_ms', 'generation')
local state = meta[1]
if not state then
    return {'not_armed'}
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_text = string.format('%d', now)

local function finish(reply)
    redis.call('SET', KEYS[8], cjson.encode(reply), 'EX', ARGV[3])
    return reply
end

if state == 'closed' or now >= tonumber(meta[3]) then
    return finish({'sale_closed'})
end
if state == 'paused' then
    return {'sale_paused'}
end
if now < tonumber(meta[2]) then
    return {'sale_not_open', meta[2], now_text}
end

local buyer = ARGV[2]
local limit = redis.call('HGET', KEYS[5], buyer)
if not limit then
    return finish({'not_registered'})
end

for i = 4, #ARGV do
    if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
        return finish({'unknown_space', ARGV[i]})
    end
end

local held = tonumber(redis.call('HGET', KEYS[6], buyer) or '0')
if held >= tonumber(limit) then
    return finish({'limit_reached', limit})
end

for i = 4, #ARGV do
    local label = ARGV[i]
    if redis.call('HSETNX', KEYS[4], label, '') == 1 then
        local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
        local hold_id = ARGV[1] .. '-' .. seq
        local deadline = string.format('%d', now + tonumber(meta[4]))
        redis.call('HSET', KEYS[4], label, hold_id)
        redis.call('SETBIT', KEYS[3], redis.call('HGET', KEYS[2], label), 1)
        redis.call('HINCRBY', KEYS[6], buyer, 1)
        redis.call('HINCRBY', KEYS[1], 'version', 1)
        redis.call('XADD', KEYS[7], '*',
            'hold', hold_id, 'label', label, 'buyer', buyer,
            'granted_ms', now_text, 'deadline_ms', deadline,
            'generation', meta[5])
        return finish({'granted', hold_id, label, now_text, deadline})
    end
end
return finish({'space_taken'})
