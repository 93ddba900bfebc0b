"""Load and timing: wrk for throughput, and a small asyncio HTTP/1.1 client
for the measurements wrk cannot make (first-byte time of one request, a
storm of first requests with open-loop arrivals, a paced prober).

The prober runs in its own process (python3 -m podbench.loadgen probe ...),
so that a storm driven from this process cannot delay its timestamps."""

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parents[1] / "wrk" / "users.lua"


def percentile(values, fraction):
    """Nearest-rank percentile: the smallest value with at least `fraction`
    of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


def wrk(port, users, seconds, connections, threads):
    """One wrk run against 127.0.0.1:port; returns requests/s, latency
    percentiles in ms and the error counts wrk saw (non-2xx included)."""
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
               "--timeout", "5s", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          env={"BENCH_USERS": str(users), "PATH": "/usr/bin:/bin"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    result = json.loads(lines[-1])
    latency = result["latency_us"]
    return {
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "requests": result["requests"],
        "errors": sum(result["errors"].values()),
        "p50_ms": latency["p50"] / 1000, "p99_ms": latency["p99"] / 1000,
    }


class Response:
    def __init__(self, status, headers, body, first_byte_s):
        self.status, self.headers, self.body = status, headers, body
        self.first_byte_s = first_byte_s


async def read_response(reader):
    """Reads one response; returns (status, headers, body, when): `when` is
    the monotonic time at which its status line had arrived, the first byte
    for any purpose here (nginx sends the head in one write)."""
    status_line = await reader.readuntil(b"\r\n")
    arrived = time.monotonic()
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = (await reader.readuntil(b"\r\n")).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.read()
    return status, headers, body, arrived


async def first_request(port, identity, timeout, token=None):
    """One request on a new connection, as a new user's browser sends it,
    read to its end: the response, and the time to its first byte. With a
    token (a gateway that takes signed identities), it goes as
    "Authorization: Bearer" instead of X-User-ID."""
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    who = f"Authorization: Bearer {token}" if token else f"X-User-ID: {identity}"
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: local.gateway.com\r\n{who}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        status, headers, body, arrived = await asyncio.wait_for(read_response(reader), timeout)
        return Response(status, headers, body, arrived - started)
    finally:
        writer.close()


async def _probe_user(port, identity, interval, latencies, errors, stop):
    reader = writer = None
    next_at = time.monotonic()
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()
            writer.write(f"GET / HTTP/1.1\r\nHost: local.gateway.com\r\nX-User-ID: {identity}\r\n\r\n".encode())
            status, headers, _, _ = await asyncio.wait_for(read_response(reader), 10)
            latencies.append(time.monotonic() - started)
            if status != 200:
                errors.append(status)
            if headers.get("connection") == "close":
                writer.close()
                writer = None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
            errors.append(type(error).__name__)
            if writer is not None:
                writer.close()
            writer = None
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if writer is not None:
        writer.close()


async def _probe(port, identities, rate, seconds):
    latencies, errors, stop = [], [], asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    interval = len(identities) / rate
    tasks = [asyncio.create_task(_probe_user(port, identity, interval, latencies, errors, stop))
             for identity in identities]
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        stop.set()
    await asyncio.gather(*tasks)
    return latencies, errors


def probe_summary(latencies, errors):
    return {"requests": len(latencies), "errors": len(errors),
            "p50_ms": 1000 * percentile(latencies, 0.50) if latencies else None,
            "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else None}


class Prober:
    """Hot-path requests of existing users at a fixed total rate, in a
    process of its own, until stop(); then their latency percentiles."""

    def __init__(self, port, identities, rate, max_seconds=600):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "podbench.loadgen", "probe", "--port", str(port),
             "--rate", str(rate), "--seconds", str(max_seconds), *identities],
            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return json.loads(out)


async def _send(port, identity, delay, outcomes, started):
    await asyncio.sleep(delay)
    sent = time.monotonic()
    try:
        response = await first_request(port, identity, 200)
        outcome = response.status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
        outcome = type(error).__name__
    outcomes.append({"identity": identity, "outcome": outcome, "done_s": time.monotonic() - started,
                     "wait_s": time.monotonic() - sent})


async def _storm(port, schedule):
    outcomes, started = [], time.monotonic()
    await asyncio.gather(*(_send(port, identity, delay, outcomes, started) for identity, delay in schedule))
    return outcomes


def storm(port, schedule, niceness=10):
    """First requests, each at its delay after the start (open loop), from a
    process of its own at a lower priority: the thousand clients of a storm
    are not on the gateway's machine in production. Returns one outcome per
    request: the status or the error, and when it was done."""
    done = subprocess.run(
        ["nice", "-n", str(niceness), sys.executable, "-m", "podbench.loadgen", "storm", "--port", str(port)],
        input=json.dumps(schedule), capture_output=True, text=True, timeout=600,
        cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"the storm's load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(prog="python3 -m podbench.loadgen")
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("probe", help="paced hot-path requests; JSON on SIGTERM or timeout")
    probe.add_argument("--port", type=int, required=True)
    probe.add_argument("--rate", type=float, required=True, help="requests per second, all users")
    probe.add_argument("--seconds", type=float, required=True, help="stop after this long at most")
    probe.add_argument("identities", nargs="+")
    burst = commands.add_parser("storm", help="first requests on a schedule read from stdin as JSON "
                                "[[identity, delay_s], ...]; their outcomes as JSON")
    burst.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "probe":
        latencies, errors = asyncio.run(_probe(args.port, args.identities, args.rate, args.seconds))
        print(json.dumps(probe_summary(latencies, errors)))
    else:
        print(json.dumps(asyncio.run(_storm(args.port, json.load(sys.stdin)))))


if __name__ == "__main__":
    main()
