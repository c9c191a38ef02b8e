-- wrk script: grab requests from many buyers with skewed demand.
--
-- Environment:
--   GRAB_PATH    request path, for example /api/sales/1/holds
--   TOKENS_FILE  one bearer token per line (one per buyer)
--   LABELS_FILE  one space label per line, most wanted first
--   SKEW         demand exponent: the label index is floor(n * u^SKEW) for a
--                uniform u, so 1 is uniform and 3 crowds onto the first labels
--   RANKED       labels per request (1 to 5)
--   SEQUENTIAL   if "1", one label per request in file order, so with one
--                thread (-t1) no label is asked for twice until they run out
--                (RANKED and SKEW are then ignored)
--   MAX_REQUESTS if set, each thread stops after this many responses. wrk
--                still waits out -d before it ends and divides by the whole
--                duration, so done() also prints "elapsed N responses S
--                seconds", from the first request to the last response.
--   PREBUILT     if set, each thread builds this many requests before the
--                clock starts and sends them in turn, then builds more on
--                the fly. No response is read by Lua, so wrk costs about as
--                much per grab as per bare request. The status codes are
--                then not counted, but wrk still counts non-2xx responses.
-- Each request uses a fresh Idempotency-Key. Unless PREBUILT is set, the
-- status codes are counted and printed by done() as one line
-- "statuses 201=... 409=...".

local threads = {}

-- wrk runs LuaJIT, whose FFI reads the monotonic clock (CLOCK_MONOTONIC = 1).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clock_id, wrk_timespec *tp);
]]
local timespec = ffi.new("wrk_timespec")

local function now()
    ffi.C.clock_gettime(1, timespec)
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local function read_lines(path)
    local lines = {}
    for line in io.lines(path) do
        if line ~= "" then lines[#lines + 1] = line end
    end
    return lines
end

function setup(thread)
    thread:set("id", #threads + 1)
    threads[#threads + 1] = thread
end

function init(args)
    path = os.getenv("GRAB_PATH")
    tokens = read_lines(os.getenv("TOKENS_FILE"))
    labels = read_lines(os.getenv("LABELS_FILE"))
    skew = tonumber(os.getenv("SKEW") or "1")
    ranked = tonumber(os.getenv("RANKED") or "1")
    sequential = os.getenv("SEQUENTIAL") == "1"
    max_requests = tonumber(os.getenv("MAX_REQUESTS") or "0")
    counter = 0
    responses = 0
    statuses = {}
    math.randomseed(id * 7919 + os.time())
    prebuilt = {}
    for i = 1, tonumber(os.getenv("PREBUILT") or "0") do
        prebuilt[i] = build_request()
    end
    sent = 0
end

local function pick_label()
    local index = math.floor(#labels * math.random() ^ skew) + 1
    return labels[math.min(index, #labels)]
end

function build_request()
    counter = counter + 1
    local chosen, seen = {}, {}
    if sequential then
        chosen[1] = '"' .. labels[(counter - 1) % #labels + 1] .. '"'
    end
    while #chosen < ranked and not sequential do
        local label = pick_label()
        if not seen[label] then
            seen[label] = true
            chosen[#chosen + 1] = '"' .. label .. '"'
        end
    end
    local body = '{"spaces": [' .. table.concat(chosen, ",") .. ']}'
    local headers = {
        ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
        ["Idempotency-Key"] = "w" .. id .. "-" .. counter .. "-" .. math.random(1e9),
        ["Content-Type"] = "application/json",
    }
    return wrk.format("POST", path, headers, body)
end

function request()
    sent = sent + 1
    first_sent = first_sent or now()
    return prebuilt[sent] or build_request()
end

-- wrk reads every response into Lua only when this function exists.
if not os.getenv("PREBUILT") then
    function response(status, headers, body)
        statuses[status] = (statuses[status] or 0) + 1
        responses = responses + 1
        last_received = now()
        if max_requests > 0 and responses >= max_requests then
            wrk.thread:stop()
        end
    end
end

function done(summary, latency, requests)
    local total = {}
    local started, finished, received = nil, nil, 0
    for _, thread in ipairs(threads) do
        local sent, last = thread:get("first_sent"), thread:get("last_received")
        if sent and (not started or sent < started) then started = sent end
        if last and (not finished or last > finished) then finished = last end
        received = received + (thread:get("responses") or 0)
        local counts = thread:get("statuses")
        for status, count in pairs(counts) do
            total[status] = (total[status] or 0) + count
        end
    end
    local parts = {}
    for status, count in pairs(total) do
        parts[#parts + 1] = status .. "=" .. count
    end
    table.sort(parts)
    io.write("statuses " .. table.concat(parts, " ") .. "\n")
    if started and finished then
        io.write(string.format("elapsed %d responses %.6f seconds\n",
            received, finished - started))
    end
end
