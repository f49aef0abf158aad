"""The product chart's host admission policies (helm/vcluster-spawner/templates/admission.yaml)
on a local cluster, as an operator's cluster has them once the chart is installed: the tests
and the demo apply them right after the cluster starts, so every user namespace the spawner
makes is guarded by the real API server's ValidatingAdmissionPolicy admission."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml
from kubernetes_asyncio import client

from .cluster import ClusterState

CHART = Path(__file__).resolve().parent.parent / "helm" / "vcluster-spawner"
RELEASE = "local"
# tools/ablation.py names one protection to remove here: "policy:<policy>:<validation index>" or
# "policy:hub-records:trusted=<annotation>" (docs/ablation.md)
ABLATION = "VCS_ABLATE"


def ablated(doc: dict) -> dict:
    """``doc``, a rendered or live policy, less the protection ``$VCS_ABLATE`` names (tools/ablation.py);
    unchanged when none is named or it is another."""
    what = os.environ.get(ABLATION, "")
    if not what.startswith("policy:") or doc.get("kind", "ValidatingAdmissionPolicy") != "ValidatingAdmissionPolicy":
        return doc
    _, policy, part = what.split(":", 2)
    if not doc["metadata"]["name"].endswith(f"-{policy}"):
        return doc
    doc = copy.deepcopy(doc)
    if part.startswith("trusted="):
        variable = next(v for v in doc["spec"]["variables"] if v["name"] == "trusted")
        kept = [a for a in yaml.safe_load(variable["expression"]) if a != part.removeprefix("trusted=")]
        variable["expression"] = json.dumps(kept)
    else:
        doc["spec"]["validations"][int(part)]["expression"] = "true"
    return doc


async def ablate_live(api: client.ApiClient) -> None:
    """The same, on the policies installed in the cluster (a chart installed by a test)."""
    admission = client.AdmissionregistrationV1Api(api)
    for policy in (await admission.list_validating_admission_policy()).items:
        doc = api.sanitize_for_serialization(policy)
        weakened = ablated(doc)
        if weakened != doc:
            await admission.replace_validating_admission_policy(doc["metadata"]["name"], weakened)


def render_admission_policies(helm: Path, values: dict | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory() as home, tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values or {}, f)
        f.flush()
        env = {**os.environ, "HELM_CACHE_HOME": home, "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home}
        done = subprocess.run([str(helm), "template", RELEASE, str(CHART), "--namespace", "vcluster-spawner",
                               "--show-only", "templates/admission.yaml", "--values", f.name],
                              env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"helm template of the admission policies failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


async def apply_admission_policies(api: client.ApiClient, state: ClusterState) -> list[str]:
    """Create or replace each policy and binding; returns their names."""
    admission = client.AdmissionregistrationV1Api(api)
    calls = {"ValidatingAdmissionPolicy": ("validating_admission_policy", admission),
             "ValidatingAdmissionPolicyBinding": ("validating_admission_policy_binding", admission)}
    names = []
    for doc in map(ablated, render_admission_policies(state.binaries / "helm")):
        suffix, api_group = calls[doc["kind"]]
        name = doc["metadata"]["name"]
        try:
            current = await getattr(api_group, f"read_{suffix}")(name)
        except client.ApiException as e:
            if e.status != 404:
                raise
            await getattr(api_group, f"create_{suffix}")(doc)
        else:
            doc["metadata"]["resourceVersion"] = current.metadata.resource_version
            await getattr(api_group, f"replace_{suffix}")(name, doc)
        names.append(f"{doc['kind']}/{name}")
    return names
