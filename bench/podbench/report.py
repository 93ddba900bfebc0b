"""What make bench writes: bench/results/<timestamp>.json (everything
measured), docs/BENCHMARKS.md (tables, ratios, targets met or missed, and
the profiles that explain a miss) and docs/benchmarks.png (throughput and
latency per case, drawn by gnuplot)."""

import json
import subprocess

from .hot_path import CASES

LABELS = {name: f"{letter}. {label}" for letter, name, label in CASES}
CARRIED_SECTIONS = {"hot": "section 1", "cold": "section 2", "warm": "section 3", "storm": "section 4",
                    "reaper": "section 5", "burst": "section 6"}
WARM_TARGET = "warm pool: new user's first byte p99 < 20 ms"
# Issue 17: a class at once must be served well inside the gateway's wait
# timeout (60 s in make run's stack); half of it, as tests/e2e/test_burst.py.
BURST_BOUND_S = 30


def evaluate(results):
    """Each target of issues 7, 10 and 17 with the figure it is judged on."""
    targets = []
    for users, cases in results.get("hot_path", {}).items():
        rps = {name: cases[name]["rps"]["median"] for name in cases}
        a, b, c, d, e = (rps[name] for name in ("static", "cached", "module", "lua", "seed"))
        who = f"{users} user" + ("s" if users != "1" else "")
        targets += [
            {"target": f"hot path, {who}: b >= 95% of a", "value": f"{100 * b / a:.1f}%", "met": b >= 0.95 * a,
             "users": users, "case": "cached"},
            {"target": f"hot path, {who}: c >= 85% of a", "value": f"{100 * c / a:.1f}%", "met": c >= 0.85 * a,
             "users": users, "case": "module"},
            {"target": f"hot path, {who}: c loses at most half of what d loses",
             "value": f"c loses {100 * (1 - c / a):.1f}%, d {100 * (1 - d / a):.1f}%",
             "met": (a - c) <= 0.5 * (a - d), "users": users, "case": "module"},
            {"target": f"hot path, {who}: b >= 20 x e", "value": f"{b / e:.1f} x", "met": b >= 20 * e},
        ]
    for label, cold in _on_backends(results, "cold_start"):
        p99 = cold["notify"]["overhead_ms"]["p99"]
        where = "" if label == "kube-sim" else f" on the {label}"
        targets.append({"target": f"cold start{where}: overhead p99 <= 50 ms", "value": f"{p99:.1f} ms",
                        "met": p99 <= 50})
    cold = results.get("cold_start")
    warm = results.get("warm_pool")
    if warm:
        p99 = warm["p99_ms"]["median"]
        value = f"{p99:.2f} ms (median of {len(warm['runs'])} runs' p99)"
        if cold:
            value += f"; cold path {cold['notify']['first_byte_ms']['p99']:.0f} ms"
        targets.append({"target": WARM_TARGET, "value": value, "met": p99 < 20})
    storm = results.get("storm")
    if storm:
        before = storm["existing_users_before"]["p99_ms"]
        for name in ("arrivals", "herd"):
            run = storm[name]
            during = run["existing_users_during"]["p99_ms"]
            targets += [
                {"target": f"storm, {name}: 0 errors", "value": str(run["errors"]), "met": run["errors"] == 0},
                {"target": f"storm, {name}: 0 duplicate pods", "value": str(run["duplicate_pods"]),
                 "met": run["duplicate_pods"] == 0 and run["users_without_pod"] == 0},
                {"target": f"storm, {name}: existing users' p99 <= 2 x without a storm",
                 "value": f"{during:.1f} ms against {before:.1f} ms ({during / before:.1f} x)",
                 "met": during <= 2 * before},
            ]
    burst = results.get("burst")
    if burst:
        run = burst["default"]
        targets += [
            {"target": f"burst, default settings: all {run['users']} new users served, one pod each",
             "value": f"{run['served']} served, {run['duplicate_pods']} duplicate pods",
             "met": run["served"] == run["users"] and run["duplicate_pods"] == 0
             and run["users_without_pod"] == 0},
            {"target": f"burst, default settings: the last new user's wait < {BURST_BOUND_S} s",
             "value": f"{run['wait_s']['last']:.2f} s (p99 {run['wait_s']['p99']:.2f} s)",
             "met": run["wait_s"]["last"] < BURST_BOUND_S},
        ]
    return targets


def write_json(results, directory, stamp):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def chart(results, path, work_dir):
    """Two panels: requests/s (median, min-max bars) and p50/p99 latency,
    per case, for one user and for many."""
    hot = results["hot_path"]
    variants = list(hot)
    data = work_dir / "chart.dat"
    with open(data, "w") as out:
        out.write("# case " + " ".join(f"rps{v} min{v} max{v} p50_{v} p99_{v}" for v in variants) + "\n")
        for _, name, _ in CASES:
            columns = []
            for variant in variants:
                case = hot[variant][name]
                columns += [case["rps"]["median"], case["rps"]["min"], case["rps"]["max"],
                            case["p50_ms"]["median"], case["p99_ms"]["median"]]
            out.write(f'"{LABELS[name]}" ' + " ".join(f"{value:.3f}" for value in columns) + "\n")
    machine = results["machine"]
    title = f"pod-router make bench, {machine['cores']} cores, {machine['cpu']}, {results['stamp']}"
    names = [f"{v} user" + ("s" if v != "1" else "") for v in variants]
    script = f"""
set terminal pngcairo size 1200,900 font ",10" noenhanced
set output "{path}"
set multiplot layout 2,1 title "{title}"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.6 border -1
set boxwidth 0.9
set xtics rotate by -15 nomirror
set grid ytics
set key top right
set xrange [-0.6:4.6]
set ylabel "requests/s (median, min-max)"
set yrange [0:*]
plot "{data}" using 2:3:4:xtic(1) title "{names[0]}", "" using 7:8:9 title "{names[1]}"
set style histogram clustered gap 2
set ylabel "latency, ms (median of runs)"
set logscale y
set yrange [0.5:*]
set key top left
plot "{data}" using 5:xtic(1) title "p50, {names[0]}", "" using 6 title "p99, {names[0]}", \\
     "" using 10 title "p50, {names[1]}", "" using 11 title "p99, {names[1]}"
unset multiplot
"""
    (work_dir / "chart.gp").write_text(script)
    subprocess.run(["gnuplot", str(work_dir / "chart.gp")], check=True, capture_output=True, timeout=60)


BACKEND_LABELS = (("kube-sim", ""), ("real control plane", "_real"))


def _only(backends):
    label = backends[0][0]
    return f"Measured on {label if label == 'kube-sim' else 'the ' + label} only (`--backends`)."


def _on_backends(results, key):
    """(backend label, figures) for each backend a two-backend phase ran
    on: kube-sim's under `key`, the real control plane's under key_real."""
    return [(label, results[key + suffix]) for label, suffix in BACKEND_LABELS if results.get(key + suffix)]


def _real_against_sim(backends, case, key, figures):
    """A two-backend section's closing line: for the run under `key`, each
    of `figures` ((name, path into the run, digits), in ms) on the real
    control plane against kube-sim, with the ratio."""
    if len(backends) < 2:
        return [_only(backends), ""]
    sim, real = backends[0][1][key], backends[1][1][key]

    def at(run, path):
        for step in path:
            run = run[step]
        return run
    parts = []
    for name, path, digits in figures:
        ratio = f"{at(real, path) / at(sim, path):.1f} x" if at(sim, path) else "kube-sim's is 0"
        parts.append(f"{name} {at(real, path):.{digits}f} ms against {at(sim, path):.{digits}f} ms ({ratio})")
    return [f"Real control plane against kube-sim, {case}: {', '.join(parts)}.", ""]


def _row(cells):
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _spread(value, digits):
    return f"{value['median']:.{digits}f} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"


def _rank(count, fraction):
    """Which of `count` values, slowest first, the nearest-rank percentile is."""
    from_top = count - max(1, int(-(-fraction * count // 1)))
    return "slowest" if from_top == 0 else f"slowest but {from_top}"


def warm_section(results):
    """Section 3: the warm pool's first byte, side by side with the cold
    path's from section 2 when the cold phase ran in the same invocation."""
    warm = results.get("warm_pool")
    if not warm:
        return []
    runs, every = len(warm["runs"]), warm["all_samples_ms"]
    out = ["## 3. Warm pool", "",
           f"A new user's first request when the controller keeps {warm['pool_size']} Ready, unassigned pods "
           f"(`{warm['controller_flags']}`, a fresh kube-sim with the cold start's pod start times). {runs} runs; "
           f"in each, from a full pool, {warm['users']} new users one after another, one every "
           f"{1000 * warm['interval_s']:.0f} ms, each timed to its first byte on a new connection as in the cold "
           "start. Every request was checked to be a claim: its session's origin is `pool` and names a pool pod, "
           f"the gateway's `pod_router_pool_claims_total` grew by {warm['users']} a run with no empty-pool count "
           "and no cold start, and kube-sim created no pod for these users. p50 and p99 are each run's "
           f"(nearest rank: of {warm['users']} requests, the p99 is the {_rank(warm['users'], 0.99)}); the median "
           "of the runs, the lowest and highest in brackets.", "",
           _row(["A new user's first byte", "p50 ms", "p99 ms", "Requests"]), _row(["---"] * 4),
           _row([f"warm pool, median of {runs} runs", _spread(warm["p50_ms"], 2), _spread(warm["p99_ms"], 2),
                 f"{runs} x {warm['users']}"]),
           _row(["warm pool, all requests together", f"{every['p50']:.2f}", f"{every['p99']:.2f}",
                 every["count"]])]
    cold = results.get("cold_start")
    if cold:
        first_byte = cold["notify"]["first_byte_ms"]
        out += [_row(["cold start, Redis pub/sub (section 2)", f"{first_byte['p50']:.1f}",
                      f"{first_byte['p99']:.1f}", cold["notify"]["users"]]),
                _row(["cold / warm", f"{first_byte['p50'] / warm['p50_ms']['median']:.0f} x",
                      f"{first_byte['p99'] / warm['p99_ms']['median']:.0f} x", ""]), ""]
    else:
        out += ["", "The cold phase did not run in this invocation, so there is no cold path to set beside it: "
                "run `--phases cold,warm` for both.", ""]
    pod_refill = warm.get("pod_refill_s_mean")
    inside = (f"Inside the gateway (`pod_router_new_pod_seconds{{path=\"warm\"}}`, each run's mean, the median "
              "of the runs; nginx's clock counts whole milliseconds) a claim took "
              f"{warm['gateway_wait_ms_mean']:.1f} ms")
    if warm.get("slow"):
        inside += (f"; of the {warm['slow']} requests slower than {warm['slow_ms']} ms at the client, "
                   f"{warm['slow_in_gateway']} took that long inside the gateway")
    out += [inside + f". The pool was full {warm['initial_fill_s']:.1f} s after the controller started; the fewest "
            f"free pods a request found was {warm['fewest_free']} of {warm['pool_size']}; after a run's last request "
            f"the pool was full again in {_spread(warm['refill_s'], 1)} s"
            + (f" (the controller's `pool_refill_seconds`, a pool pod's creation to its offer: {pod_refill:.2f} s "
               "on average)" if pod_refill is not None else "") + ".", ""]
    return out


def cold_section(results):
    """Section 2: a new user's first byte and our overhead, on kube-sim and
    on the real control plane, side by side."""
    backends = _on_backends(results, "cold_start")
    if not backends:
        return []
    first = backends[0][1]
    out = ["## 2. Cold start", "",
           f"A new user's first request, {first['notify']['users']} users one after another, on each backend "
           "with the same pod start times (`--start-delay` plus up to `--start-jitter`; the real control "
           "plane's node agent runs the pods as kube-sim does). The pod timeline gives when the API server "
           "stored each pod and when the pod became Ready: kube-sim records it itself (`--pod-timeline`), for "
           "the real kube-apiserver the bench watches the pods (bench/podbench/pod_watch.py). The overhead is "
           "the first byte's time minus that readiness time: the gateway's Redis round trips, the event "
           "through RabbitMQ, the controller's API call and watch, the Redis write and the wake-up, and the "
           "proxied response. The polling case turns pub/sub off (`pod_router_subscribe off`) and re-checks "
           f"every {first['poll_interval']}.", "",
           _row(["Wake-up", "Backend", "Overhead p50 ms", "Overhead p99 ms", "min-max ms", "First byte p50 ms",
                 "Pod readiness p50 ms"]), _row(["---"] * 7)]
    for mode in ("notify", "poll"):
        for label, cold in backends:
            run = cold[mode]
            out.append(_row([{"notify": "Redis pub/sub", "poll": f"polling, {cold['poll_interval']}"}[mode], label,
                             f"{run['overhead_ms']['p50']:.1f}", f"{run['overhead_ms']['p99']:.1f}",
                             f"{run['overhead_ms']['min']:.1f}-{run['overhead_ms']['max']:.1f}",
                             f"{run['first_byte_ms']['p50']:.1f}", f"{run['pod_readiness_ms']['p50']:.1f}"]))
    out.append("")
    out += _real_against_sim(backends, "with pub/sub", "notify", (
        ("overhead p50", ("overhead_ms", "p50"), 1), ("overhead p99", ("overhead_ms", "p99"), 1),
        ("first byte p50", ("first_byte_ms", "p50"), 1)))
    return out + node_cold_lines(results.get("cold_start_node"), backends)


def node_cold_lines(node, backends):
    """The cold start on the real node, after the two backends' table: the
    whole system as pods (scripts/node-stack.sh), each user's pod a real
    container."""
    if not node:
        return []
    run = node["notify"]
    out = ["On the real node (kubelet, containerd, runc, the bridge CNI; scripts/node-stack.sh): the gateway, "
           "Redis, RabbitMQ and the controller run as pods of the images built here, the gateway's configuration "
           "is the shipped one (pub/sub), and each user's pod is a real container of the demo image, Ready once "
           f"its Python server answers the readiness probe. {run['users']} users one after another, timed through "
           "the relay to the gateway's NodePort.", "",
           _row(["Backend", "Overhead p50 ms", "Overhead p99 ms", "min-max ms", "First byte p50 ms",
                 "Pod readiness p50 ms"]), _row(["---"] * 6),
           _row(["real node", f"{run['overhead_ms']['p50']:.1f}", f"{run['overhead_ms']['p99']:.1f}",
                 f"{run['overhead_ms']['min']:.1f}-{run['overhead_ms']['max']:.1f}",
                 f"{run['first_byte_ms']['p50']:.1f}", f"{run['pod_readiness_ms']['p50']:.1f}"]), ""]
    parts = []
    for label, cold in backends:
        other = cold["notify"]["overhead_ms"]["p50"]
        ratio = f"{run['overhead_ms']['p50'] / other:.1f} x" if other else "n/a"
        parts.append(f"{other:.1f} ms on {label} ({ratio})")
    if parts:
        out += [f"The real node's overhead p50, {run['overhead_ms']['p50']:.1f} ms, against " + ", ".join(parts)
                + ".", ""]
    return out


def reaper_section(results):
    """Section 5: the reaper at scale on kube-sim and on the real control
    plane, side by side."""
    backends = _on_backends(results, "reaper")
    if not backends:
        return []
    out = ["## 5. Reaper at scale", "",
           "100,000 ready sessions in Redis, 100 of them idle past the timeout with real pods, on each backend. "
           "A quiet pass finds nothing to do; the reaping pass deletes the 100 pods one by one, within the "
           "controller's API rate limit.", "",
           _row(["API rate", "Backend", "Quiet pass ms", "Reaping pass ms", "Expiry to all reaped s",
                 "Controller RSS MiB"]), _row(["---"] * 6)]
    # Results from before the rate was recorded had client-go's 5/s.
    first = backends[0][1]
    default = f"default ({first.get('default_rate_flags', '5/s, burst 10')})"
    for key, label in (("default_rate", default), ("raised_rate", first["raised_rate_flags"])):
        for backend, reaper in backends:
            run = reaper[key]
            out.append(_row([label, backend, f"{run['quiet_tick_ms']:.2f}", f"{run['reaping_tick_ms']:.0f}",
                             f"{run['all_reaped_s']:.1f}", f"{run['controller_rss_mib']:.0f}"]))
    out.append("")
    return out + _real_against_sim(backends, f"at {first['raised_rate_flags']}", "raised_rate", (
        ("reaping pass", ("reaping_tick_ms",), 0), ("quiet pass", ("quiet_tick_ms",), 2)))


def burst_section(results):
    """Section 6: a class of new users at once, with the controller's
    defaults and with the defaults it had before issue 17."""
    burst = results.get("burst")
    if not burst:
        return []
    out = ["## 6. A class at once", "",
           f"{burst['settings']}, as when a class or a workshop starts (open loop: nobody waits for anybody "
           "else), each held by the gateway until its own pod is ready (`pod_router_wait_timeout 180s`, so that "
           "a slow controller shows as a long wait, not as 503s). A fresh kube-sim for each row, pods starting "
           f"{burst['start_delay_s']:g} s after they are scheduled, as in `make run`; a user's wait runs from "
           "sending the request to the end of the response.", "",
           _row(["Controller", "Served", "Errors", "Duplicate pods", "Wait p50 s", "p90 s", "p99 s", "Last s",
                 "All served after s"]), _row(["---"] * 9)]
    for key, label in (("default", f"defaults: `{burst['defaults']}`"),
                       ("old", f"before issue 17: `{burst['old_defaults']}`")):
        run = burst.get(key)
        if not run:
            continue
        wait = run["wait_s"]
        out.append(_row([label, f"{run['served']} of {run['users']}",
                         f"{run['errors']}" + (f" ({', '.join(run['error_kinds'])})" if run["errors"] else ""),
                         run["duplicate_pods"], f"{wait['p50']:.2f}", f"{wait['p90']:.2f}", f"{wait['p99']:.2f}",
                         f"{wait['last']:.2f}", f"{run['all_served_s']:.1f}"]))
    return out + [""]


def markdown(results, targets, chart_name, json_name):
    machine, settings = results["machine"], results["settings"]
    where = "every figure below was measured in that one run, on one machine, side by side"
    carried = results.get("carried_over")
    if carried and carried["phases"]:
        sections = ", ".join(CARRIED_SECTIONS[phase] for phase in carried["phases"])
        where = (f"every figure below was measured in that run, except those of {sections}, which come from the "
                 f"earlier run in `bench/results/{carried['from']}` (`--carry-over`)"
                 + (", as does the chart" if "hot" in carried["phases"] else ""))
    out = ["# Benchmarks", "",
           f"Written by `make bench` (bench/run.py) from the run in `bench/results/{json_name}`; {where}. "
           "Do not edit by hand: run `make bench` again. "
           "[performance.md](performance.md) reads these figures.", ""]
    out += [
           f"- Machine: {machine['cores']} cores, {machine['cpu']}, {machine['memory_gib']:.0f} GiB, {machine['os']}",
           f"- Software: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}",
           f"- Load: wrk on loopback, {settings['threads']} threads, {settings['connections']} connections, "
           f"{settings['seconds']} s per run after a {settings['warmup']} s warm-up, {settings['runs']} runs per case "
           "(interleaved); each gateway with "
           f"{settings['workers']} workers (nginx `worker_processes`, uvicorn `--workers`); the same backend pod "
           "(an nginx answering the seed's `It works!` page) behind every case. Everything, the load generator "
           "included, shares the machine's cores.",
           "", "## Targets", "", _row(["Target", "Measured", "Met"]), _row(["---"] * 3)]
    out += [_row([t["target"], t["value"], "yes" if t["met"] else "**no**"]) for t in targets]
    hot = results.get("hot_path")
    if hot:
        out += ["", "## 1. Hot path", "",
                "A user whose pod is ready. Requests/s and latency are the median of the runs, with the "
                "lowest and highest in brackets; the ratio is to case a. CPU µs/request is the median over the "
                "runs of each process's CPU time divided by the requests served: the gateway's workers, Redis, "
                "and all (the gateway, the backend, Redis and wrk). On a shared machine it moves less than "
                "requests/s does.", "",
                f"![throughput and latency per case]({chart_name})", ""]
        for variant, cases in hot.items():
            a = cases["static"]["rps"]["median"]
            out += [f"### {variant} ready user" + ("s" if variant != "1" else "") +
                    (" (each request picks one at random)" if variant != "1" else ""), "",
                    _row(["Case", "Requests/s", "vs a", "p50 ms", "p99 ms", "Errors", "CPU µs/request: gateway",
                          "Redis", "all"]), _row(["---"] * 9)]
            for _, name, _ in CASES:
                case = cases[name]
                cpu = case.get("cpu_us", {})
                out.append(_row([LABELS[name], _spread(case["rps"], 0), f"{100 * case['rps']['median'] / a:.1f}%",
                                 _spread(case["p50_ms"], 2), _spread(case["p99_ms"], 2), case["errors"]]
                                + ([f"{cpu['gateway']:.1f}", f"{cpu['redis']:.1f}", f"{sum(cpu.values()):.1f}"]
                                   if cpu else ["", "", ""])))
            out.append("")
        out += ["Cases: a is `proxy_pass` to a static upstream holding the pod's address, with keepalive; b and c "
                "this module with `pod_router_cache_ttl " + results["settings"]["cache_ttl"] + "` and `0`; d "
                "`access_by_lua` with lua-resty-redis (pooled) and `balancer_by_lua` with keepalive, as "
                "ingress-nginx does it (bench/gateways/lua.conf.in); e the seed's gateway re-created from its "
                "README: FastAPI on uvicorn (uvloop, httptools) checking Redis and proxying with httpx "
                "(bench/gateways/seed_gateway.py). b, c, d and e all read the same sessions in the same Redis.", ""]
    out += cold_section(results)
    out += warm_section(results)
    storm = results.get("storm")
    if storm:
        before = storm["existing_users_before"]
        out += ["## 4. Storm", "",
                f"New users while existing ones keep working ({storm['settings']['existing']}, measured from a "
                f"process of its own). Without a storm their p50 is {before['p50_ms']:.1f} ms and p99 "
                f"{before['p99_ms']:.1f} ms. Controller: {results['settings']['storm_controller']}.", "",
                _row(["Storm", "Requests", "Errors", "Pods created", "Duplicate pods", "All served after s",
                      "A new user's wait p50 / p99 s", "Existing users p50 / p99 ms"]), _row(["---"] * 8)]
        for name in ("arrivals", "herd"):
            run = storm[name]
            during = run["existing_users_during"]
            out.append(_row([storm["settings"][name], run["requests"],
                             f"{run['errors']}" + (f" ({', '.join(run['error_kinds'])})" if run["errors"] else ""),
                             run["pods_created"], run["duplicate_pods"], f"{run['all_served_s']:.1f}",
                             f"{run['wait_s']['p50']:.2f} / {run['wait_s']['p99']:.2f}",
                             f"{during['p50_ms']:.1f} / {during['p99_ms']:.1f}"]))
        floor = storm.get("herd_static_floor")
        if floor:
            out += ["", "The herd against plain nginx (case a's static upstream to the same backend, no "
                    "pod-router at all), for scale: the existing users' p99 goes from "
                    f"{floor['existing_users_before']['p99_ms']:.1f} ms to "
                    f"{floor['existing_users_during']['p99_ms']:.1f} ms ({floor['errors']} errors). That much "
                    "of the herd's effect is a thousand connections arriving at once on two cores."]
        out.append("")
    out += reaper_section(results)
    out += burst_section(results)
    profiles = results.get("profiles", {})
    missed = [t for t in targets if not t["met"]]
    if missed:
        out += ["## Targets missed, and why", ""]
        out += [f"- {t['target']}: {t['value']}" for t in missed]
        out.append("")
        for title, profile in profiles.items():
            out += [f"### Profile: {title}", "", profile.get("note", ""), ""]
            if profile.get("cost_us"):
                roles = ["gateway", "backend", "redis", "wrk"]
                out += [_row(["CPU µs per request"] + roles + ["all"]), _row(["---"] * (len(roles) + 2))]
                for case, costs in profile["cost_us"].items():
                    out.append(_row([case] + [f"{costs[role]:.1f}" for role in roles]
                                    + [f"{sum(costs[role] for role in roles):.1f}"]))
                out.append("")
            for sort, lines in profile["reports"].items():
                out += [f"perf report --sort {sort}:", "", "```"] + lines + ["```", ""]
    return "\n".join(out).rstrip() + "\n"
