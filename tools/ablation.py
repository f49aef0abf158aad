"""The ablation run: every protection removed, one at a time, and the attack tests that claim it
run against the weakened product. A protection whose removal no attack notices is a gap: an
attack test that passes with its protection removed proves nothing. Writes docs/ablation.md.

    python tools/ablation.py [--cluster STATE_DIR] [--only SUBSTRING] [--out docs/ablation.md]

A whole run takes about an hour on 2 cores (2 min a protection); it is not part of make test.

How each kind of protection is removed (nothing of it is in the product's code paths):
- an admission policy's rule: the rendered policy, as the tests apply it, with that rule's
  expression replaced by ``true`` (``localcluster.admission.ablated``; ``VCS_ABLATE``);
- the host namespaces' Pod Security labels: removed from every user namespace right before the
  test body (tests/conftest.py);
- a check in the product's own code (an ownership-gate call, the owner's creation time, the
  retirement of a removed user's namespace, the bound on a wake's replicas, the pool members'
  name mark): ``tools/ablation/sitecustomize.py``, loaded by every Python process of the run
  (the hub and its services too), swaps it for the behaviour before it existed.

The hub's RBAC rules have an ablation of their own in the suite
(tests/test_chart_rbac.py::test_removing_any_rule_of_the_hubs_roles_breaks_a_lifecycle_step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tools" / "ablation" / "sitecustomize.py"

SECURITY = "tests/test_security.py::"
OWNERSHIP = "tests/test_security_ownership.py::"
COMPROMISED = SECURITY + "test_a_compromised_control_plane_cannot_forge_what_the_hub_acts_on"
COLLIDING = OWNERSHIP + "test_a_user_whose_name_lands_on_another_users_vcluster_gets_nothing_of_it"
NEWCOMER = OWNERSHIP + "test_a_newcomer_with_a_removed_users_name_inherits_nothing_of_theirs"
HUB_CONFINED = "tests/test_chart_rbac.py::test_the_hubs_identity_is_confined_to_the_namespaces_it_made"
TRUSTED = ("loft.sh/paused", "loft.sh/paused-replicas", "loft.sh/paused-date", "hub.jupyter.org/values-hash",
           "hub.jupyter.org/starting-at", "hub.jupyter.org/deleting", "hub.jupyter.org/woken-ahead-at")


@dataclass(frozen=True)
class Protection:
    name: str
    ablation: str          # VCS_ABLATE / ablation.txt
    tests: tuple[str, ...]


PROTECTIONS = [
    Protection("tenant-workloads: only namespace-local volume types", "policy:tenant-workloads:0",
               (SECURITY + "test_an_inline_csi_volume_is_refused_by_the_host",)),
    Protection("tenant-workloads: no Service externalIPs", "policy:tenant-workloads:1",
               (SECURITY + "test_a_service_reaching_outside_the_namespace_is_refused_by_the_host",)),
    Protection("tenant-workloads: allowed Service types", "policy:tenant-workloads:2",
               (SECURITY + "test_a_service_reaching_outside_the_namespace_is_refused_by_the_host",)),
    Protection("tenant-workloads: no spec.nodeName", "policy:tenant-workloads:3",
               (SECURITY + "test_a_pod_placed_past_the_scheduler_is_refused_by_the_host",)),
    Protection("tenant-workloads: allowed nodeSelector keys and tolerations", "policy:tenant-workloads:4",
               (SECURITY + "test_a_pod_placed_past_the_scheduler_is_refused_by_the_host",)),
    Protection("tenant-workloads: no claim selectors", "policy:tenant-workloads:5",
               (SECURITY + "test_a_claim_that_selects_volumes_by_label_is_refused_by_the_host",)),
    Protection("tenant-volumes: a claim names only volumes reserved for its namespace", "policy:tenant-volumes:0",
               (SECURITY + "test_a_claim_naming_a_volume_not_reserved_for_the_tenant_is_refused",)),
    Protection("hub-confinement: managed namespaces only, before and after", "policy:hub-confinement:0",
               (HUB_CONFINED,)),
    Protection("hub-confinement: Pod Security on the hub's namespaces", "policy:hub-confinement:1", (HUB_CONFINED,)),
    Protection("hub-confinement: RoleBindings by roleRef and subjects", "policy:hub-confinement:2", (HUB_CONFINED,)),
    Protection("hub-volumes: the hub writes home volumes only", "policy:hub-volumes:0", (HUB_CONFINED,)),
    Protection("hub-records: helm release records", "policy:hub-records:0", (COMPROMISED,)),
    Protection("hub-records: StatefulSet replicas and trusted annotations", "policy:hub-records:1", (COMPROMISED,)),
    *(Protection(f"hub-records: annotation {a}", f"policy:hub-records:trusted={a}", (COMPROMISED,)) for a in TRUSTED),
    Protection("host namespace Pod Security labels", "host-pod-security",
               (COMPROMISED, SECURITY + "test_a_tenant_who_lifts_pod_security_inside_is_stopped_by_the_host")),
    Protection("ownership gate: status page (rows, download, admin actions)", "gate@vcluster_spawner.services.status",
               (COLLIDING,)),
    Protection("ownership gate: lifecycle service", "gate@vcluster_spawner.services.lifecycle", (COLLIDING,)),
    Protection("ownership gate: hub pages", "gate@vcluster_spawner.hubpages", (COLLIDING,)),
    Protection("ownership gate: operator CLI", "gate@vcluster_spawner.__main__:_command", (COLLIDING,)),
    Protection("ownership gate: wake-ahead", "gate@vcluster_spawner.spawner:_wake_ahead", (COLLIDING,)),
    Protection("ownership gate: a user's removal", "gate@vcluster_spawner.lifecycle:remove_user", (COLLIDING,)),
    Protection("owners compared by the hub's creation time", "owner-created", (NEWCOMER,)),
    Protection("a removed user's namespace retired first", "retire-first", (NEWCOMER,)),
    Protection("a home kept for someone else is never relabelled", "home-kept",
               (SECURITY + "test_a_home_kept_for_someone_else_is_not_taken_by_a_new_users_start",)),
    Protection("a wake restores at most 3 replicas", "wake-cap",
               ("tests/test_ops_helpers.py::test_a_wake_restores_at_most_the_high_availability_size_whatever_the_"
                "annotation_says",)),
    Protection("warm pool members' --pool mark", "pool-mark",
               ("tests/test_names_properties.py::test_no_name_template_produces_a_warm_pool_members_name",)),
]


def run_tests(tests: tuple[str, ...], ablation: str, cluster: Path, workdir: Path) -> tuple[list[str], list[str]]:
    """(failed, passed) test ids of one pytest run with ``ablation`` in force ("" for none)."""
    site = workdir / "site"
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(SITE, site / "sitecustomize.py")
    (site / "ablation.txt").write_text(ablation)
    report = workdir / "report.xml"
    env = {**os.environ, "LOCALCLUSTER_REUSE": str(cluster), "VCS_ABLATE": ablation,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--basetemp", str(workdir / "pt"),
                    "--junitxml", str(report), *tests], cwd=ROOT, env=env, stdout=open(workdir / "pytest.log", "w"),
                   stderr=subprocess.STDOUT)
    failed, passed = [], []
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        (failed if case.find("failure") is not None or case.find("error") is not None else passed).append(name)
    return failed, passed


def start_cluster(state_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "localcluster", "up", "--state-dir", str(state_dir),
                             "--plugin", "vcluster_real"], cwd=ROOT, stdout=open(state_dir.with_suffix(".log"), "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 1800
    while "cluster ready" not in state_dir.with_suffix(".log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the local cluster did not start: {state_dir.with_suffix('.log')}")
        time.sleep(2)
    return proc


def table(results: dict) -> str:
    """docs/ablation.md from every result recorded (results.json beside it), in PROTECTIONS' order."""
    lines = ["| protection | removed as | attack tests run | failed with it removed | verdict (run time, commit) |",
             "| --- | --- | --- | --- | --- |"]
    for protection in PROTECTIONS:
        result = results.get(protection.ablation)
        if result is None:
            lines.append(f"| {protection.name} | `{protection.ablation}` | | not run yet | |")
            continue
        verdict = "killed" if result["failed"] else "**SURVIVED: a gap**"
        tests = "<br>".join(f"`{t.split('::')[-1]}`" for t in protection.tests)
        failed = "<br>".join(f"`{f}`" for f in result["failed"]) or "none"
        lines.append(f"| {protection.name} | `{protection.ablation}` | {tests} | {failed} | "
                     f"{verdict} ({result['seconds']:.0f} s, {result['commit']}) |")
    return "\n".join(lines) + "\n"


def report(results: dict, last_run: str) -> str:
    return ("# Ablation run\n\nGenerated by `python tools/ablation.py` (how each protection is removed: its "
            "docstring). Each protection is removed on its own and the attack tests that claim it run against the "
            "weakened product on the real vCluster 0.36.1, after a baseline run in which they all pass. A protection "
            "that no test kills is a gap. Results are kept in `docs/ablation.json` with the commit each was measured "
            "at; `--only TEXT` (repeatable) re-runs some protections and keeps the others' results. A whole run takes "
            "about an hour on 2 cores (about 2 min a protection, the baseline first). The hub's RBAC rules have their "
            "own ablation in the suite "
            "(`tests/test_chart_rbac.py::test_removing_any_rule_of_the_hubs_roles_breaks_a_lifecycle_step`).\n\n"
            f"{table(results)}\n{last_run}\n")


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", help="state directory of a running local cluster (default: start one)")
    parser.add_argument("--only", action="append", default=[],
                        help="only protections whose name or removal contains this (repeatable)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "ablation.md"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the kept results")
    args = parser.parse_args()
    protections = [p for p in PROTECTIONS
                   if not args.only or any(o in p.name or o in p.ablation for o in args.only)]
    out = Path(args.out)
    store = out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.exists() else {}
    if args.report_only:
        out.write_text(report(results, ""))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="ablation-"))
    proc = None
    cluster = Path(args.cluster) if args.cluster else workdir / "cluster"
    if not args.cluster:
        proc = start_cluster(cluster)
    started = time.monotonic()
    try:
        every = tuple(dict.fromkeys(t for p in protections for t in p.tests))
        failed, _ = run_tests(every, "", cluster, workdir / "baseline")
        if failed:
            raise SystemExit(f"the attack tests fail with every protection in place: {failed} "
                             f"({workdir / 'baseline' / 'pytest.log'})")
        for n, protection in enumerate(protections):
            begun = time.monotonic()
            failed, _ = run_tests(protection.tests, protection.ablation, cluster, workdir / f"run{n}")
            results[protection.ablation] = {"failed": failed, "seconds": round(time.monotonic() - begun),
                                            "commit": commit()}
            store.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            print(f"{protection.name}: {'killed by ' + ', '.join(failed) if failed else 'SURVIVED'}", flush=True)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
    out.write_text(report(results, f"Last run: {len(protections)} protection(s) in "
                                   f"{(time.monotonic() - started) / 60:.0f} min on this machine (2 cores)."))
    survived = [p.name for p in PROTECTIONS if p.ablation in results and not results[p.ablation]["failed"]]
    print(f"wrote {out}; survived: {survived or 'none'}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
