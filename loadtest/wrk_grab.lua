-- wrk script: grab requests from many buyers with skewed demand.
--
-- Environment:
--   GRAB_PATH    request path, for example /api/sales/1/holds
--   TOKENS_FILE  one bearer token per line (one per buyer)
--   LABELS_FILE  one space label per line, most wanted first
--   SKEW         demand exponent: the label index is floor(n * u^SKEW) for a
--                uniform u, so 1 is uniform and 3 crowds onto the first labels
--   RANKED       labels per request (1 to 5)
-- Each request uses a fresh Idempotency-Key. The status codes are counted
-- and printed by done() as one line "statuses 201=... 409=...".

local threads = {}

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
    counter = 0
    statuses = {}
    math.randomseed(id * 7919 + os.time())
end

local function pick_label()
    local index = math.floor(#labels * math.random() ^ skew) + 1
    return labels[math.min(index, #labels)]
end

function request()
    counter = counter + 1
    local chosen, seen = {}, {}
    while #chosen < ranked do
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

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, thread in ipairs(threads) do
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
end
