"""perf profiles for the page, taken when a target is missed: where the
machine's two cores went while the case ran (by process), and the hottest
functions of the process that matters."""

import os
import resource
import signal
import subprocess
from pathlib import Path


class SystemProfile:
    """perf record -a (every process, no call graphs: cheap) from start()
    until stop()."""

    def __init__(self, path):
        self.path = Path(path)
        self.process = subprocess.Popen(["perf", "record", "-a", "-F", "499", "-o", str(self.path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)

    def report(self, sort, limit=15, comm=None, pids=None):
        command = ["perf", "report", "-i", str(self.path), "--stdio", "--sort", sort, "--percent-limit", "0.5"]
        if comm:
            command += ["--comms", comm]
        if pids:
            command += ["--pid", ",".join(str(pid) for pid in pids)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        lines = [line.rstrip() for line in done.stdout.splitlines() if line.strip() and not line.startswith("#")]
        return lines[:limit]


def profile_while(path, action, sorts=(("comm", None), ("dso,sym", "nginx")), pids=None, label=None):
    """Runs action() under a system-wide profile; returns (its result,
    {sort: lines}). With pids, the second and later sorts see only those
    processes (label names them)."""
    profile = SystemProfile(path)
    try:
        result = action()
    finally:
        profile.stop()
    reports = {}
    for n, (sort, comm) in enumerate(sorts):
        only = pids if n else None
        title = sort + (f" ({comm})" if comm and not only else "") + (f" ({label})" if only else "")
        reports[title] = profile.report(sort, comm=None if only else comm, pids=only)
    return result, reports


def cpu_seconds(pids):
    """User + system CPU time so far of these processes, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def cost_per_request(groups, action):
    """Runs action(), which returns a wrk result, and divides the CPU time
    each group of processes used meanwhile by the requests served: where a
    request's microseconds go. wrk's own time is its rusage as a child."""
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = action()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    costs = {name: 1e6 * (cpu_seconds(pids) - before[name]) / result["requests"] for name, pids in groups.items()}
    costs["wrk"] = 1e6 * ((after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)) \
        / result["requests"]
    return result, costs
