-- wrk script for make bench: every request carries the X-User-ID of one of
-- BENCH_USERS ready users ("bench-0" .. "bench-<n-1>"), drawn at random so
-- that a cache sees the users in no useful order; done() prints one JSON
-- line that bench/podbench/loadgen.py reads.
local users = tonumber(os.getenv("BENCH_USERS") or "1")
local requests_by_user = {}

function init(args)
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
    for n = 0, users - 1 do
        requests_by_user[n] = wrk.format("GET", "/", {["X-User-ID"] = "bench-" .. n})
    end
end

function request()
    return requests_by_user[math.random(0, users - 1)]
end

function done(summary, latency, requests)
    local errors = summary.errors
    io.write(string.format(
        '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
        summary.requests, summary.duration, summary.bytes,
        errors.connect, errors.read, errors.write, errors.status, errors.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean))
end
