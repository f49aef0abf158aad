"""The product chart's host admission policies (helm/vcluster-spawner/templates/admission.yaml)
on a local cluster, as an operator's cluster has them once the chart is installed: the tests
and the demo apply them right after the cluster starts, so every user namespace the spawner
makes is guarded by the real API server's ValidatingAdmissionPolicy admission."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import yaml
from kubernetes_asyncio import client

from .cluster import ClusterState

CHART = Path(__file__).resolve().parent.parent / "helm" / "vcluster-spawner"
RELEASE = "local"


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
    for doc in render_admission_policies(state.binaries / "helm"):
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
