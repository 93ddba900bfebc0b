#!/usr/bin/python3
"""make bench: pod-router against the static-proxy limit, the OpenResty
way and the seed's own design, on this machine, in one run.

Phases (all by default): hot (throughput and latency of ready users through
five gateways), cold (a new user's first byte, pub/sub and polling), warm
(a new user's first byte when the controller keeps a warm pool), storm (a
thousand new users while others work), reaper (100,000 sessions), burst (a
class of 300 new users within 10 s, with the controller's default settings).
They run in that order, except that warm runs after storm (it restarts the
cluster with a controller that keeps a pool). The cold and reaper phases
run on each of --backends: kube-sim, then the real control plane
(scripts/cluster.sh, built by scripts/install-deps.sh), side by side on the
page; the cold phase also on the real node, with everything as pods
(scripts/node-stack.sh); the others on kube-sim.
Writes bench/results/<timestamp>.json, docs/BENCHMARKS.md and
docs/benchmarks.png. Not a test: nothing here passes or fails on a figure;
the page says which targets were met. --carry-over takes the phases not run
this time from an earlier results file, and the page says which figures
came from which run."""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from podbench import burst, cold_start, hot_path, node_cold, reaper, report, storm, warm_pool  # noqa: E402
from podbench.loadgen import wrk  # noqa: E402
from podbench.profile import cost_per_request, profile_while  # noqa: E402
from podbench.servers import CONTROLLER, MODULE, REPO, BenchError  # noqa: E402
from podbench.system import BACKENDS, System  # noqa: E402

PHASES = ("hot", "cold", "warm", "storm", "reaper", "burst")
# What only the hot path runs (machine()'s names).
HOT_PATH_SOFTWARE = ("wrk", "lua-nginx-module", "uvicorn")
HOT_PATH_SETTINGS = ("threads", "connections", "seconds", "warmup", "runs", "workers", "users", "cache_ttl")
# Where each phase's figures go in the results.
RESULT_KEYS = {"hot": ("hot_path",), "cold": ("cold_start", "cold_start_real", "cold_start_node"),
               "warm": ("warm_pool",),
               "storm": ("storm",), "reaper": ("reaper", "reaper_real"), "burst": ("burst",)}
# Where a phase that runs on both backends puts the real control plane's
# figures (kube-sim's stay under the phase's own key, as before), and the
# cold phase the real node's.
REAL_SUFFIX = "_real"
NODE_SUFFIX = "_node"
# The real node (scripts/node-stack.sh) runs the cold phase only.
ALL_BACKENDS = BACKENDS + ("node",)
STORM_CONTROLLER_FLAGS = ["--kube-qps", "100", "--kube-burst", "200"]


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))

    def version(command, pick=lambda text: text.split()[-1]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=20)
            return pick((done.stdout or done.stderr).strip().splitlines()[0])
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {
        "cores": os.cpu_count(), "cpu": cpu, "memory_gib": memory_kib / 2**20,
        "os": f"{platform.system()} {platform.release()}",
        "versions": {
            "nginx": version(["/usr/sbin/nginx", "-v"], lambda t: t.split("/")[-1]),
            "redis": version(["redis-server", "--version"], lambda t: t.split()[2].split("=")[-1]),
            "wrk": version(["dpkg-query", "-W", "-f=${Version}", "wrk"]),
            "lua-nginx-module": version(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-http-lua"]),
            "uvicorn": version([sys.executable, "-m", "uvicorn", "--version"], lambda t: t.split()[2]),
            "python": platform.python_version(),
        },
    }


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of %(default)s")
    parser.add_argument("--runs", type=int, default=5,
                        help="wrk runs per case, and runs of the warm phase; the median is reported (%(default)s)")
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run (%(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="wrk warm-up per case, not reported (%(default)s)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (%(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (%(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every gateway (%(default)s)")
    parser.add_argument("--users", type=int, default=10000, help="ready users of the many-users runs (%(default)s)")
    parser.add_argument("--cold-users", type=int, default=100, help="new users per cold-start case (%(default)s)")
    parser.add_argument("--node-cold-users", type=int, default=20,
                        help="new users of the cold start on the real node, whose 2 cores fit about 25 user "
                             "pods beside the system's own (each asks 50m of CPU) (%(default)s)")
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS),
                        help="where the cold and reaper phases run, comma-separated subset of %(default)s "
                             "(node: the cold phase only, everything as pods on the real node)")
    parser.add_argument("--start-delay", type=float, default=0.3,
                        help="the pods' container start delay, s, on either backend (%(default)s)")
    parser.add_argument("--start-jitter", type=float, default=0.5,
                        help="up to this much more per pod, drawn at random (%(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where BENCHMARKS.md goes")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, configs, profiles)")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="measure nothing: write the page and chart again from a results file")
    parser.add_argument("--carry-over", type=Path, metavar="RESULTS_JSON",
                        help="the phases not run this time: their figures from this earlier results file")
    args = parser.parse_args()
    args.phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    args.backends = [backend.strip() for backend in args.backends.split(",") if backend.strip()]
    unknown = sorted(set(args.backends) - set(ALL_BACKENDS))
    if unknown or not args.backends:
        parser.error(f"--backends: choose from {', '.join(ALL_BACKENDS)}")
    if args.runs < 3:
        print("run.py: fewer than 3 runs: the medians are not worth publishing", file=sys.stderr)
    return args


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def profile_hot_misses(results, gateways, system, args, run_dir):
    """When the module misses a hot-path target: one more run of case a and
    of the missing case, each process's CPU time per request (where the
    extra microseconds go), and perf's hottest functions in the missing
    case's nginx workers."""
    profiles = {}
    for target in report.evaluate({"hot_path": results}):
        if target["met"] or "case" not in target:
            continue
        case, users = target["case"], int(target["users"])
        title = f"{report.LABELS[case]}, {users} user(s)"
        if title in profiles:
            continue

        def groups(name):
            return {"gateway": gateways[name].worker_pids(), "backend": system.backend.worker_pids(),
                    "redis": [system.redis.process.pid]}

        def load(name):
            return lambda: wrk(gateways[name].port, users, args.seconds, args.connections, args.threads)
        static, static_costs = cost_per_request(groups("static"), load("static"))
        (measured, costs), reports = profile_while(
            run_dir / f"perf-{case}-{users}.data", lambda: cost_per_request(groups(case), load(case)),
            sorts=(("comm", None), ("dso,sym", None)), pids=gateways[case].worker_pids(),
            label=f"{case} gateway's workers")
        profiles[title] = {
            "note": f"One more {args.seconds} s wrk run of case a and of this case ({static['rps']:.0f} and "
                    f"{measured['rps']:.0f} requests/s), each process's CPU time divided by the requests it "
                    "served; then `perf record -a` over the second run.",
            "cost_us": {report.LABELS["static"]: static_costs, report.LABELS[case]: costs},
            "reports": reports}
    return profiles


def main():
    args = parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        with tempfile.TemporaryDirectory() as work_dir:
            publish(results, args.render, args.docs, Path(work_dir))
        return
    # SIGTERM (a CI timeout, kill) must stop every server too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("run.py: terminated"))
    for path, what in ((MODULE, "the module"), (CONTROLLER, "the controller")):
        if not path.exists():
            sys.exit(f"run.py: {what} is not built ({path}): run make first")
    needed = {"wrk": "hot" in args.phases, "gnuplot": "hot" in args.phases,
              "perf": "hot" in args.phases or "storm" in args.phases}
    missing = [tool for tool, wanted in needed.items() if wanted and not shutil.which(tool)]
    if missing:
        sys.exit(f"run.py: missing {', '.join(missing)}: run scripts/install-deps.sh --bench")
    if not shutil.which("kubectl"):
        sys.exit("run.py: kubectl is not on the PATH (it applies the controller's RBAC to kube-sim)")
    if "real" in args.backends and {"cold", "reaper"} & set(args.phases):
        built = subprocess.run([str(REPO / "scripts" / "cluster" / "build.sh"), "--print-path"],
                               capture_output=True, text=True, timeout=60)
        if built.returncode != 0:
            sys.exit("run.py: the real control plane is not built: run scripts/install-deps.sh "
                     "(or leave it out: --backends kube-sim)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = Path(tempfile.mkdtemp(prefix="pod-router-bench-"))
    run_dir.chmod(0o755)
    results = {"stamp": stamp, "machine": machine(), "profiles": {},
               "settings": {**{k: v for k, v in vars(args).items()
                               if k not in ("out", "docs", "keep", "phases", "carry_over", "backends")},
                            "backends": args.backends,
                            "phases": args.phases, "cache_ttl": hot_path.CACHE_TTL,
                            "storm_controller": " ".join(STORM_CONTROLLER_FLAGS)}}
    log(f"run folder {run_dir}; {results['machine']['cores']} cores, {results['machine']['cpu']}")
    system = None
    try:
        system = System(run_dir)
        if "hot" in args.phases:
            results["hot_path"], gateways = hot_path.run(system, args, log)
            results["profiles"].update(profile_hot_misses(results["hot_path"], gateways, system, args, run_dir))
            for gateway in gateways.values():
                system.stop_gateway(gateway)
            system.redis_client().flushall()
        cold_here = "cold" in args.phases and "kube-sim" in args.backends
        if cold_here or "storm" in args.phases:
            system.start_cluster("kube-sim", args.start_delay, args.start_jitter)
            system.start_controller(*STORM_CONTROLLER_FLAGS)
            if cold_here:
                results["cold_start"] = cold_start.run(system, args, log)
            if "storm" in args.phases:
                results["storm"] = storm.run(system, args, log)
        if "cold" in args.phases and "real" in args.backends:
            # The same users' names again: their sessions from kube-sim go.
            system.stop_cluster()
            system.redis_client().flushall()
            system.start_cluster("real-cold", args.start_delay, args.start_jitter, backend="real")
            system.start_controller(*STORM_CONTROLLER_FLAGS)
            results["cold_start" + REAL_SUFFIX] = cold_start.run(system, args, log)
            system.stop_cluster()
        if "cold" in args.phases and "node" in args.backends:
            # Everything as pods on the real node: a system of its own.
            results["cold_start" + NODE_SUFFIX] = node_cold.run(args, log)
        if "warm" in args.phases:
            results["warm_pool"] = warm_pool.run(system, args, log, STORM_CONTROLLER_FLAGS)
        if "reaper" in args.phases:
            for backend in (backend for backend in args.backends if backend in BACKENDS):
                key = "reaper" + (REAL_SUFFIX if backend == "real" else "")
                results[key] = reaper.run(system, log, backend)
        if "burst" in args.phases:
            results["burst"] = burst.run(system, args, log)
    except BenchError as error:
        sys.exit(f"run.py: {error} (logs in {run_dir})")
    finally:
        if system is not None:
            system.stop()
    if args.carry_over:
        carry_over(results, args.carry_over, args.phases)
    targets = report.evaluate(results)
    results["targets"] = targets
    for name in ("arrivals", "herd"):
        profile = results.get("storm", {}).get(name, {}).pop("profile", None)
        if profile and any(not t["met"] and t["target"].startswith(f"storm, {name}: existing") for t in targets):
            results["profiles"][f"the {name} storm"] = {
                "note": "perf record -a at 499 Hz for the whole storm; kube-sim (python3) and the storm's "
                        "clients (python3) run at nice 10.", "reports": profile}
    json_path = report.write_json(results, args.out, stamp)
    publish(results, json_path, args.docs, run_dir)
    if args.keep:
        log(f"kept {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


def carry_over(results, path, measured):
    """The figures of the phases not measured now, from the earlier run in
    `path`, marked as such (the page names that run for them)."""
    earlier = json.loads(path.read_text())
    carried = [phase for phase in PHASES
               if phase not in measured and any(key in earlier for key in RESULT_KEYS[phase])]
    for phase in carried:
        results.update({key: earlier[key] for key in RESULT_KEYS[phase] if key in earlier})
    # A missed target's profile explains the figures of its run: kept with
    # them (the storms' are titled "the ... storm", the hot path's by case).
    for title, profile in earlier.get("profiles", {}).items():
        phase = "storm" if title.startswith("the ") and title.endswith(" storm") else "hot"
        if phase in carried:
            results["profiles"].setdefault(title, profile)
    results["carried_over"] = {"from": path.name, "stamp": earlier.get("stamp"), "phases": carried}
    if "hot" in carried:
        # The page's load line and the versions of what only the hot path
        # runs describe the carried figures; this run's settings are kept
        # aside.
        results["carried_over"]["settings_now"] = dict(results["settings"])
        settings, versions = earlier.get("settings", {}), earlier.get("machine", {}).get("versions", {})
        results["settings"].update({key: settings[key] for key in HOT_PATH_SETTINGS if key in settings})
        results["machine"]["versions"].update(
            {name: versions[name] for name in HOT_PATH_SOFTWARE if name in versions})
    log(f"carried over from {path.name}: {', '.join(carried) or 'nothing'}")


def publish(results, json_path, docs, work_dir):
    """docs/BENCHMARKS.md and docs/benchmarks.png from one run's results."""
    targets = results["targets"]
    docs.mkdir(parents=True, exist_ok=True)
    chart_path = docs / "benchmarks.png"
    # A hot path carried over from an earlier run keeps the chart drawn then.
    if "hot_path" in results and "hot" not in results.get("carried_over", {}).get("phases", []):
        report.chart(results, chart_path, work_dir)
    (docs / "BENCHMARKS.md").write_text(report.markdown(results, targets, chart_path.name, json_path.name))
    log(f"wrote {json_path}, {docs / 'BENCHMARKS.md'}, {chart_path}")
    for target in targets:
        print(f"  {'met   ' if target['met'] else 'MISSED'}  {target['target']}: {target['value']}")


if __name__ == "__main__":
    main()
