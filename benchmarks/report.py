"""``latest.json`` -> ``report.md`` with PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from .apimetrics import VERBS, WRITE_VERBS

KINDS = ("cold", "wake", "warm", "kubespawner", "pool", "wake-ahead", "warm-interleaved")
LABELS = {"cold": "cold (create)", "wake": "wake (asleep)", "warm": "warm (running)", "kubespawner": "plain KubeSpawner",
          "pool": "first start, warm pool", "wake-ahead": "wake-ahead (spawn page)",
          "warm-interleaved": "warm (interleaved with the two before)"}
MiB = 1024 * 1024


def _s(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def plots(results: dict, out: Path) -> list[str]:
    """Writes the PNGs; returns their file names (none when matplotlib is missing: the smoke
    test's environment need not have it, ``make bench`` installs it)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    spawn = results["spawn"]
    kinds = [k for k in KINDS if k in spawn and spawn[k]["summary"]["phases_median"]]
    if kinds:
        phases = list(spawn[kinds[0]]["summary"]["phases_median"])
        fig, ax = plt.subplots(figsize=(10, 0.9 * len(kinds) + 2.2))
        left = [0.0] * len(kinds)
        colors = plt.get_cmap("tab10").colors
        for i, phase in enumerate(phases):
            widths = [spawn[k]["summary"]["phases_median"][phase] or 0 for k in kinds]
            ax.barh([LABELS[k] for k in kinds], widths, left=left, label=phase, color=colors[i % 10],
                    hatch="//" if phase == "control plane start" else None)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_xlabel("seconds (median of each phase)")
        ax.set_title("Spawn latency by phase, REST start request until the notebook answers through the proxy")
        ax.invert_yaxis()
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "phases.png", dpi=100)
        plt.close(fig)
        written.append("phases.png")

    levels = results["concurrency"]
    if levels:
        users = [lvl["users"] for lvl in levels]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        a1.plot(users, [lvl["total"]["median"] for lvl in levels], "o-", label="p50")
        a1.plot(users, [lvl["total"]["p95"] for lvl in levels], "s--", label="p95")
        a1.set_xlabel("users starting at once (cold)")
        a1.set_ylabel("spawn latency, s")
        a1.set_xticks(users)
        a1.set_ylim(bottom=0)
        a1.legend()
        a1.set_title("Latency under concurrency")
        a2.bar([str(u) for u in users], [lvl["hub_cpu_seconds"] for lvl in levels], label="hub CPU s")
        a2.bar([str(u) for u in users], [lvl["helm_cpu_seconds"] for lvl in levels],
               bottom=[lvl["hub_cpu_seconds"] for lvl in levels], label="helm CPU s")
        a2.set_xlabel("users starting at once")
        a2.set_ylabel("CPU seconds")
        twin = a2.twinx()
        twin.plot([str(u) for u in users], [lvl["hub_peak_rss_bytes"] / MiB for lvl in levels], "ko-", label="hub peak RSS")
        twin.set_ylabel("hub peak RSS, MiB")
        twin.set_ylim(bottom=0)
        a2.legend(loc="upper left")
        a2.set_title("Hub cost of the burst")
        fig.tight_layout()
        fig.savefig(out / "concurrency.png", dpi=100)
        plt.close(fig)
        written.append("concurrency.png")

    rows = [(LABELS[k], spawn[k]["summary"]["api_per_spawn_median"]) for k in kinds]
    rows += [(f"{lvl['users']} at once", lvl["api_per_spawn"]) for lvl in levels]
    rows = [(label, api) for label, api in rows if api]
    if rows:
        fig, ax = plt.subplots(figsize=(11, 4))
        width = 0.8 / len(rows)
        for i, (label, api) in enumerate(rows):
            ax.bar([x + i * width for x in range(len(VERBS))], [api["hub"][v] for v in VERBS], width, label=label)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(VERBS))], VERBS)
        ax.set_ylabel("host API requests per spawn")
        ax.set_title("Hub's requests to the host API server per spawn, by verb (its own identity, from /metrics)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "api.png", dpi=100)
        plt.close(fig)
        written.append("api.png")
    return written


def _failures(levels: list[dict], timeout: float) -> list[str]:
    """Failed spawns grouped by reason; a client-side time-out has no message of its own."""
    reasons: dict[str, list[str]] = {}
    for lvl in levels:
        for s in lvl["spawns"]:
            if not s["ok"]:
                reason = s["error"] if not s["error"].startswith("TimeoutError") else \
                    f"not answering within the benchmark's spawn timeout ({timeout:g} s)"
                reasons.setdefault(f"{lvl['users']} users: {reason}", []).append(s["user"])
    if not reasons:
        return []
    return (["Failed spawns:", ""]
            + [f"- {reason} ({len(users)}: {', '.join(f'`{u}`' for u in users)})" for reason, users in reasons.items()]
            + [""])


def markdown(results: dict, images: list[str]) -> str:
    m, load, settings = results["machine"], results["machine"]["load"], results["settings"]
    what = ("the real vCluster 0.36.1 (upstream's binary and chart built from the Go module proxy, "
            "docs/real-vcluster.md) and the real CoreDNS 1.14.2 (in each vCluster and as the cluster's DNS)")
    spawn, levels = results["spawn"], results["concurrency"]
    md = ["# Benchmarks: VClusterSpawner vs plain KubeSpawner", "",
          f"Generated by `make bench` ({results['duration_seconds'] / 60:.1f} min) on {results['started']}, "
          f"commit `{m['git_commit']}`. Raw numbers: [latest.json](latest.json). Goals are reported, never asserted.", "",
          "## Machine", "",
          f"- {m['cpu_model']}, {m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB RAM, "
          f"Linux {m['kernel']}, Python {m['python']}",
          f"- load average (1 min) during the run: min {load['loadavg_1m_min']:.2f}, mean {load['loadavg_1m_mean']:.2f}, "
          f"max {load['loadavg_1m_max']:.2f} ({load['samples']} samples). The machine is shared: other engineers' "
          "test runs may have used the same CPU at the same time; a load above the core count means waiting for CPU.",
          "- " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
          f"- local cluster: real etcd / kube-apiserver / controller-manager / scheduler; {what}",
          f"- sizes: {settings['runs']} measured spawns per kind, concurrency levels {settings['concurrency']}",
          "- the local node advertises this machine's cores; upstream's default CPU request of a vCluster control "
          "plane (200m) fits only ten on it (the 11th stays Pending, and its spawn waits for "
          "`vcluster_ready_timeout`), so the benchmark's hubs request 50m", ""]

    md += ["## Goals", ""]
    md += _table(["goal", "measured", "met"],
                 [[g["goal"], g["measured"], "yes" if g["met"] else "**no**"] for g in results["goals"]])

    md += ["## Spawn latency", "",
           "From the REST start request (`POST /hub/api/users/{name}/server`, then the progress event stream, as the "
           "spawn page does) until `GET /user/{name}/api/status` through configurable-http-proxy is answered by the "
           "notebook. *Control plane* is vCluster's own start (from the spawner's wait until the control plane is "
           "Ready, seen by an observer polling every 0.1 s with the spawner's readiness criteria): not the spawner's "
           "time. *Total − control plane* is everything else the user waits for, including the notebook server's own "
           "start that plain KubeSpawner waits for too; *spawner's own* is the phases only VClusterSpawner has "
           "(helm / wake, readiness detection, pod created through the virtual API and the syncer).", ""]
    kinds = [k for k in KINDS if k in spawn]
    md += _table(["kind", "runs (ok)", "median s", "p95 s", "control plane median s", "total − control plane median s",
                  "spawner's own median s", "stop does", "stop median s", "stop p95 s"],
                 [[LABELS[k], f"{spawn[k]['summary']['runs']} ({spawn[k]['summary']['success_rate']:.0%})",
                   _s(spawn[k]["summary"]["total"]["median"]), _s(spawn[k]["summary"]["total"]["p95"]),
                   _s(spawn[k]["summary"]["control_plane"]["median"]), _s(spawn[k]["summary"]["spawner_overhead"]["median"]),
                   _s(spawn[k]["summary"]["own_overhead"]["median"]),
                   spawn[k]["stop_action"], _s(spawn[k]["summary"]["stop_hub_seconds"]["median"]),
                   _s(spawn[k]["summary"]["stop_hub_seconds"]["p95"])] for k in kinds])
    md += ["Stop latency is the hub's own \"server took N seconds to stop\" (for *wake* that is the sleep, for "
           "*cold* the delete: helm uninstall and the data PVC). Wake latency is the *wake* spawn.", "",
           "*first start, warm pool*: a new user each run, whose start claims the oldest ready member (the lifecycle "
           "service replenishes the pool meanwhile, on the same machine; its helm and requests run under the hub's "
           "identity and are counted with the hub's). *wake-ahead*: the user opened the spawn page "
           "(the spawner woke the asleep vCluster) and started 10 s later. *warm (interleaved)*: warm starts taken "
           "run by run between those two, for their ratio.", ""]
    if kinds:
        phases = list(spawn[kinds[0]]["summary"]["phases_median"])
        md += ["### Phases (median seconds)", ""]
        md += _table(["phase"] + [LABELS[k] for k in kinds],
                     [[p] + [_s(spawn[k]["summary"]["phases_median"].get(p)) for k in kinds] for p in phases])
        md += ["*hub to spawner*: request until `Spawner.start`; *helm / wake*: `helm upgrade --install` or the wake "
               "patch; *readiness detection*: control plane ready until the spawner noticed; *pod created*: until the "
               "host copy of the notebook pod exists; *host pod running*: the local kubelet started the notebook process; "
               "*single-user server up*: the pod is Ready (its port accepts connections); *spawner notices the server*: "
               "KubeSpawner's back-off polling of its pod watch, then the hub's HTTP check; *route added*: "
               "configurable-http-proxy's route.", ""]
    if "phases.png" in images:
        md += ["![phases](phases.png)", ""]

    if levels:
        md += ["## Concurrency", "",
               "N users start at once (cold: each gets a new vCluster, helm limited to 4 at a time by "
               "`helm_max_concurrency`); then all stop (sleep). Hub CPU is the hub process's own user+system time "
               "during the burst, helm's is its exited children's; peak RSS is the hub's VmHWM, reset before the burst. "
               "After the burst the level settles, then the hub's watch requests (its reflectors re-opening their "
               "watches) are counted while all servers run, and its TCP connections to the host API "
               "(watches plus any pooled keep-alive connection) and to anything else (mostly one virtual API client "
               "per running user, the proxy and notebooks) are read from /proc.", ""]
        md += _table(["users", "ok", "p50 s", "p95 s", "max s", "wall s", "hub CPU s", "helm CPU s", "hub peak RSS MiB",
                      "hub watch req/min (steady)", "hub→host API conns", "hub other conns", "stop p50 s"],
                     [[lvl["users"], f"{lvl['success_rate']:.0%}", _s(lvl["total"]["median"]), _s(lvl["total"]["p95"]),
                       _s(lvl["total"]["max"]), _s(lvl["wall_seconds"]), _s(lvl["hub_cpu_seconds"]),
                       _s(lvl["helm_cpu_seconds"]), f"{lvl['hub_peak_rss_bytes'] / MiB:.0f}",
                       _s(lvl["hub_steady_per_minute"]["watch"]),
                       lvl["hub_connections_after_settle"]["host_api"], lvl["hub_connections_after_settle"]["other"],
                       _s(lvl["stop_hub_seconds"]["median"])] for lvl in levels])
        md += _failures(levels, settings["spawn_timeout"])
        biggest = levels[-1]
        if biggest["wall_seconds"]:
            share = biggest["hub_cpu_seconds"] / biggest["wall_seconds"]
            md += [f"At {biggest['users']} users the hub process used {biggest['hub_cpu_seconds']:.1f} CPU-s in "
                   f"{biggest['wall_seconds']:.0f} s ({share:.0%} of one core): when that share is small, the latency "
                   "is the machine's (each vCluster is a control plane of its own: API server, controller-manager, "
                   "syncer), not the hub's.", ""]
        phases = list(levels[0]["phases_median"])
        if phases:
            md += ["Phases under concurrency (median seconds, as the hub saw them; no observer runs here):", ""]
            md += _table(["phase"] + [f"{lvl['users']} users" for lvl in levels],
                         [[p] + [_s(lvl["phases_median"].get(p)) for lvl in levels] for p in phases])
        if "concurrency.png" in images:
            md += ["![concurrency](concurrency.png)", ""]

    md += ["## Hub-side cost on the host API server", "",
           "The hub runs under its own client certificate; one FlowSchema per verb (exempt priority level) lets the "
           "API server count its requests in `apiserver_flowcontrol_dispatched_requests_total`, so the vClusters' "
           "syncers, the kubelet and the controllers are not counted. The helm the hub runs has an identity of its "
           "own, counted the same way: the table counts both (the hub's whole cost), the next one the spawner's own "
           "requests and helm's apart. Requests to the vClusters' own API servers are not host API requests and "
           "are not counted.", ""]
    rows = [[f"spawn, {LABELS[k]} (median)", *(_s(spawn[k]["summary"]["api_per_spawn_median"]["hub"][v]) for v in VERBS),
             _s(spawn[k]["summary"]["api_per_spawn_median"]["hub_writes"])]
            for k in kinds if spawn[k]["summary"]["api_per_spawn_median"]]
    rows += [[f"stop, {LABELS[k]} ({spawn[k]['stop_action']}, median)",
              *(_s(spawn[k]["summary"]["api_per_stop_median"]["hub"][v]) for v in VERBS),
              _s(spawn[k]["summary"]["api_per_stop_median"]["hub_writes"])]
             for k in kinds if spawn[k]["summary"]["api_per_stop_median"]]
    for lvl in levels:
        for what in ("spawn", "stop"):
            api = lvl[f"api_per_{what}"]
            if api:
                label = f"{what}, {lvl['users']} at once (per {what})"
            if lvl["success_rate"] < 1:
                # the hub still works on the spawns the benchmark gave up on; their requests are in here
                label += " ¹"
            rows.append([label, *(_s(api["hub"][v]) for v in VERBS),
                             _s(api["hub_writes"])])
    md += _table(["per", *VERBS, "writes (" + "+".join(WRITE_VERBS) + ")"], rows)
    split = [(f"spawn, {LABELS[k]} (median)", spawn[k]["summary"]["api_per_spawn_median"])
             for k in kinds if k != "kubespawner" and spawn[k]["summary"]["api_per_spawn_median"]]
    split += [(f"spawn, {lvl['users']} at once (per spawn)", lvl["api_per_spawn"]) for lvl in levels if lvl["api_per_spawn"]]
    split = [(label, api) for label, api in split if "spawner" in api]
    if split:
        md += ["", "The same spawns, the spawner's own requests and its helm's apart:", ""]
        md += _table(["per", "spawner get", "spawner list", "spawner watch", "spawner writes", "helm get", "helm list",
                      "helm writes"],
                     [[label, _s(api["spawner"]["get"]), _s(api["spawner"]["list"]), _s(api["spawner"]["watch"]),
                       _s(sum(api["spawner"][v] for v in WRITE_VERBS)), _s(api["helm"]["get"]), _s(api["helm"]["list"]),
                       _s(sum(api["helm"][v] for v in WRITE_VERBS))] for label, api in split])
    if any(lvl["success_rate"] < 1 for lvl in levels):
        md += ["¹ Some spawns of this level did not finish within the benchmark's timeout and were still under way in "
               "the hub: their requests (readiness polls) are counted too, so these rows overstate the cost of one "
               "spawn or stop.", ""]
    idle = results.get("hub_idle") or {}
    if idle.get("hub_requests_per_minute"):
        md += ["An idle hub (one stopped user) makes, per minute: "
               + ", ".join(f"{v} {n:g}" for v, n in idle["hub_requests_per_minute"].items() if n)
               + f" (its reflectors re-open their watches); the per-spawn numbers include this background. "
               f"It holds {idle['connections']['host_api']} connection(s) to the host API.", ""]
    if levels:
        md += ["Open watches on the host API server, all clients (`apiserver_longrunning_requests{verb=\"WATCH\"}`), "
               "after each level: " + ", ".join(f"{lvl['users']} users: {lvl['open_watches_all_clients']:g}" for lvl in levels)
               + ". They grow with the number of running vClusters because each syncer watches the host; "
               "the hub's own connections are in the concurrency table.", ""]
    if "api.png" in images:
        md += ["![api](api.png)", ""]
    if not images:
        md += ["(No plots: matplotlib is not installed; `make bench` installs it.)", ""]
    return "\n".join(md)


def write(results: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    images = plots(results, out)
    path = out / "report.md"
    path.write_text(markdown(results, images))
    return path
