-- view: what a worker needs to decide clicks on held spaces itself.
--
-- A worker keeps, per sale, the availability bitmap and the buyers who hold
-- or held a space in this generation, and asks for changes every few tens of
-- milliseconds. Everything is read in one script, so the bitmap and the
-- grants always describe the same moment.
--
-- All keys belong to one sale and share its hash tag "{sale:<id>}".
--   KEYS[1]  meta hash: generation, version, state, opens_ms, closes_ms
--   KEYS[2]  taken: availability bitmap, bit set = held
--   KEYS[3]  grants stream: one entry per granted hold, with its buyer
--   KEYS[4]  counts hash: registration number -> live holds
--   ARGV[1]  generation the worker has loaded, "" for none
--   ARGV[2]  version the worker has loaded
--   ARGV[3]  id of the last grant entry the worker has read
--   ARGV[4]  most grant entries to return in one call
--
-- Returns an array whose first element says what it holds:
--   {"not_armed"}
--   {"same", now_ms, state}              no grant or release since ARGV[2]
--   {"changes", now_ms, version, state, bitmap, last_id, more,
--    label, buyer, label, buyer, ...}
--       the space and buyer of each grant after ARGV[3]; more is 1 when
--       entries were left for the next call
--   {"full", now_ms, version, state, bitmap, last_id, generation, opens_ms,
--    closes_ms, {buyer with live holds, ...}}
--       when the generation differs from ARGV[1] (a new or re-armed sale).
--       The spaces hash is not read here: for a large sale that would stall
--       Redis, so the worker reads it with HSCAN, once per generation.

local meta = redis.call('HMGET', KEYS[1],
    'generation', 'version', 'state', 'opens_ms', 'closes_ms')
if not meta[1] then
    return {'not_armed'}
end
local clock = redis.call('TIME')
local now = string.format('%d',
    tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000))
local version = meta[2] or '0'
if meta[1] == ARGV[1] and version == ARGV[2] then
    return {'same', now, meta[3]}
end
local bitmap = redis.call('GET', KEYS[2]) or ''

if meta[1] ~= ARGV[1] then
    local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
    local last_id = '0-0'
    if newest[1] then
        last_id = newest[1][1]
    end
    local holding = {}
    local counts = redis.call('HGETALL', KEYS[4])
    for i = 1, #counts, 2 do
        if tonumber(counts[i + 1]) > 0 then
            holding[#holding + 1] = counts[i]
        end
    end
    return {'full', now, version, meta[3], bitmap, last_id, meta[1], meta[4],
        meta[5], holding}
end

local limit = tonumber(ARGV[4])
local entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[3], '+', 'COUNT', limit)
local reply = {'changes', now, version, meta[3], bitmap, ARGV[3], 0}
for _, entry in ipairs(entries) do
    reply[6] = entry[1]
    local fields = entry[2]
    local label, buyer
    for i = 1, #fields, 2 do
        if fields[i] == 'label' then
            label = fields[i + 1]
        elseif fields[i] == 'buyer' then
            buyer = fields[i + 1]
        end
    end
    reply[#reply + 1] = label
    reply[#reply + 1] = buyer
end
if #entries == limit then
    reply[7] = 1
end
return reply
