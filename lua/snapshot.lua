-- snapshot: the availability bitmap with the versions that identify it.
--
--   KEYS[1]  meta hash
--   KEYS[2]  taken: availability bitmap
--
-- Returns {generation, version, state, bitmap}; generation is false when the
-- sale is not armed. Reading all of them in one script keeps the version and
-- the bitmap consistent with each other.

local meta = redis.call('HMGET', KEYS[1], 'generation', 'version', 'state')
return {meta[1], meta[2], meta[3], redis.call('GET', KEYS[2])}
