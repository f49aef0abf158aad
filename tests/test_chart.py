"""The chart rendered without a cluster (pytest -m chart): lint, a matrix of values validated
with kubernetes-validate --strict for Kubernetes 1.36, the settings snippet, the escalation
rules against what the vCluster chart grants, and the per-user namespace objects."""

from __future__ import annotations

import json
import os
import runpy
import shutil

import kubernetes_validate
import pytest
import yaml
from traitlets.config import Config

from vcluster_spawner.values import computed_values, vcluster_values

from .chart_support import CHART, KUBE_VERSION, cluster_role_rules, namespace_objects, render, run_helm, values_file
from .vclusters import vcluster_chart

pytestmark = pytest.mark.chart

ROUTES = {"spawner": {"externalApiHostTemplate": "{username}.k8s.example.org"}}
MATRIX = {
    "defaults": {},
    "standalone": {"hub": {"serviceAccount": {"create": True, "name": "jupyterhub", "namespace": "hub-system"},
                           "namespace": "hub-system", "podLabels": {"app": "jupyterhub"}}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
    "closed-egress": {"networkPolicy": {"egress": {"publicInternet": False, "dns": False, "extraRules": [
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}]}}},
    "ingress-nginx": {**ROUTES, "routes": {"kind": "ingress-nginx", "controller": {
        "namespace": "ingress-nginx", "podLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}},
    "traefik": {**ROUTES, "routes": {"kind": "traefik", "controller": {"namespace": "traefik"}}},
    "apisix": {**ROUTES, "routes": {"kind": "apisix"}},
    "rbac-only": {"config": {"create": False}, "networkPolicy": {"enabled": False}, "rbac": {"extraRules": [
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"],
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]}},
    "config-only": {"rbac": {"create": False}, "spawner": {"vclusterMode": "static", "stopAction": "",
                                                           "homeStorageClass": "nfs-rwx"}},
}
BUILT_IN = {"networking.k8s.io/v1"}


def test_helm_lint(tmp_path):
    for name, values in MATRIX.items():
        done = run_helm("lint", str(CHART), "--strict", "--values", str(values_file(values, tmp_path)), home=tmp_path)
        assert "0 chart(s) failed" in done.stdout, (name, done.stdout)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_manifest_and_namespace_object_is_valid_for_kubernetes_1_36(case, tmp_path):
    manifests = render(MATRIX[case], tmp_path)
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
    if any(m["kind"] == "ConfigMap" for m in manifests):
        for obj in namespace_objects(manifests):
            # as the spawner renders them for one user, then as they are applied
            filled = json.loads(json.dumps(obj).replace("{vcluster}", "vc-amy").replace("{external_host}", "amy.k8s.example.org"))
            filled["metadata"]["namespace"] = "vc-amy"
            if filled["apiVersion"] in BUILT_IN:
                kubernetes_validate.validate(filled, KUBE_VERSION, strict=True)
            else:  # custom resources: no schema in kubernetes-validate; shape checked in the route test
                assert filled["kind"] in ("IngressRouteTCP", "ApisixRoute"), filled


def test_values_schema_is_strict(tmp_path):
    for bad in ({"unknown": 1}, {"routes": {"kind": "haproxy"}}, {"networkPolicy": {"notebookPort": "8888"}},
                {"hub": {"serviceAccount": {"nmae": "hub"}}}, {"routes": {"kind": "traefik"}}):
        done = run_helm("template", "x", str(CHART), "--values", str(values_file(bad, tmp_path)), home=tmp_path, check=False)
        assert done.returncode != 0, (bad, done.stdout[:300])


def test_config_map_carries_every_snippet_and_the_settings_apply(tmp_path):
    manifests = render({"spawner": {"homeStorageClass": "nfs-rwx", "externalApiHostTemplate": "{username}.x.org"}}, tmp_path)
    data = next(m for m in manifests if m["kind"] == "ConfigMap")["data"]
    for snippet in (CHART / "files" / "jupyterhub_config.d").iterdir():
        if snippet.name == "__pycache__":
            continue
        assert data[snippet.name] == snippet.read_text(), snippet.name
    for key, value in data.items():
        (tmp_path / key).write_text(value)
    c = Config()
    c.VClusterSpawner.stop_action = "delete"             # set before the snippet: kept
    namespace = {"c": c, "get_config": lambda: c, "__file__": str(tmp_path / "05-vcluster-spawner-chart.py")}
    runpy.run_path(str(tmp_path / "05-vcluster-spawner-chart.py"), init_globals=namespace)
    traits = c.VClusterSpawner
    assert traits.stop_action == "delete"
    assert traits.home_storage_class == "nfs-rwx" and traits.external_api_host_template == "{username}.x.org"
    assert traits.vcluster_chart_version == "0.36.1" and traits.vcluster_mode == "dynamic"
    assert traits.vcluster_values["controlPlane"]["statefulSet"]["resources"]["limits"] == {"memory": "2Gi"}
    assert [o["metadata"]["name"] for o in traits.user_namespace_objects] == [
        "vcluster-spawner-same-namespace", "vcluster-spawner-notebooks-from-hub", "vcluster-spawner-api-from-hub",
        "vcluster-spawner-workload-egress"]


def _covers(rules: list[dict], verb: str, group: str, resource: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and not r.get("resourceNames") for r in rules)


def test_the_hub_holds_everything_the_vcluster_chart_grants(tmp_path):
    """The API server lets the hub create a Role only with permissions it holds itself (no
    escalate in the chart): every permission the vCluster chart grants its syncer, rendered
    with the values the spawner sets, is in the hub's role for user namespaces. With those
    values the vCluster chart makes no ClusterRole (no cluster-wide Secret access for syncers),
    and the hub's cluster-wide role binds nothing but its namespace role."""
    manifests = render({}, tmp_path)
    hub_rules, namespace_rules = cluster_role_rules(manifests, "vcs-hub"), cluster_role_rules(manifests)
    values = vcluster_values({}, computed_values("vc-amy", "vc-amy", "default", external_host="amy.x.org",
                                                 external_context="amy"))
    out = run_helm("template", "vc-amy", str(vcluster_chart()), "--namespace", "vc-amy", "--kube-version", KUBE_VERSION,
                   "--values", str(values_file(values, tmp_path)), home=tmp_path).stdout
    granted = [d for d in yaml.safe_load_all(out) if d and d["kind"] in ("Role", "ClusterRole")]
    assert {d["kind"] for d in granted} == {"Role"}
    missing = [(verb, group, resource) for role in granted for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]
               if not _covers(namespace_rules, verb, group, resource)]
    assert not missing, missing
    all_rules = hub_rules + namespace_rules
    assert not any(v in ("escalate", "impersonate", "*") for r in all_rules for v in r["verbs"])
    assert [r["resourceNames"] for r in all_rules if "bind" in r["verbs"]] == [["vcs-hub-namespace"]]
    assert not any("*" in r["resources"] or "*" in r["apiGroups"] for r in all_rules)
    # nothing secret, no pod creation, no exec cluster-wide
    assert not [r for r in hub_rules if {"secrets", "pods/exec"} & set(r["resources"])
                or ("pods" in r["resources"] and "create" in r["verbs"])]


def test_routes_pass_tls_through_to_each_vcluster_api(tmp_path):
    expected = {
        "ingress-nginx": ("networking.k8s.io", "ingresses"),
        "traefik": ("traefik.io", "ingressroutetcps"),
        "apisix": ("apisix.apache.org", "apisixroutes"),
    }
    for kind, (group, resource) in expected.items():
        manifests = render(MATRIX[kind], tmp_path)
        route = [o for o in namespace_objects(manifests) if not o["kind"] == "NetworkPolicy"]
        assert len(route) == 1, route
        text = json.dumps(route[0])
        assert "{external_host}" in text and "{vcluster}" in text, text
        if kind == "ingress-nginx":
            assert route[0]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-passthrough"] == "true"
        elif kind == "traefik":
            assert route[0]["spec"]["tls"] == {"passthrough": True}
            assert route[0]["spec"]["routes"][0]["match"] == "HostSNI(`{external_host}`)"
        else:
            assert route[0]["spec"]["stream"][0]["match"]["host"] == "{external_host}"
        rules = cluster_role_rules(manifests)
        assert any(r["apiGroups"] == [group] and r["resources"] == [resource] for r in rules), rules
        # the route controller may reach the vCluster API port
        api = next(o for o in namespace_objects(manifests) if o["metadata"]["name"] == "vcluster-spawner-api-from-hub")
        if MATRIX[kind]["routes"].get("controller", {}).get("namespace"):
            assert len(api["spec"]["ingress"][0]["from"]) == 2


Z2JH_CHART = os.environ.get("Z2JH_CHART_DIR")


@pytest.mark.skipif(not Z2JH_CHART, reason="set Z2JH_CHART_DIR to a checkout's jupyterhub/ chart directory")
def test_the_z2jh_example_values_render_with_zero_to_jupyterhub(tmp_path):
    """helm/examples/z2jh-values.yaml against Zero to JupyterHub's own schema and templates."""

    chart = tmp_path / "jupyterhub"
    shutil.copytree(Z2JH_CHART, chart)
    if not (chart / "values.schema.json").exists():   # chartpress generates it from the YAML
        (chart / "values.schema.json").write_text(json.dumps(yaml.safe_load((chart / "values.schema.yaml").read_text())))
    out = run_helm("template", "jhub", str(chart), "--namespace", "jhub", "--kube-version", KUBE_VERSION,
                   "--values", str(CHART.parent / "examples" / "z2jh-values.yaml"), home=tmp_path).stdout
    hub = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "hub")
    pod = hub["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "hub"
    assert {"name": "vcluster-spawner-config", "configMap": {"name": "vcs-config"}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "vcluster-spawner-config", "mountPath": "/usr/local/etc/jupyterhub/jupyterhub_config.d"} in mounts


def test_the_annotations_and_labels_the_policies_guard_are_the_ones_the_code_writes(tmp_path):
    """The chart's admission policies name, as strings, what the code defines as constants: the
    annotations a wake, sleep and start act on, the home volumes' labels, the provisioning claim."""
    from vcluster_spawner import home, vcluster

    policies = {m["metadata"]["name"]: m for m in render({}, tmp_path) if m["kind"] == "ValidatingAdmissionPolicy"}
    records = policies["vcs-hub-records"]["spec"]
    trusted = next(v["expression"] for v in records["variables"] if v["name"] == "trusted")
    guarded = {vcluster.PAUSED, vcluster.PAUSED_REPLICAS, vcluster.PAUSED_DATE, vcluster.VALUES_HASH,
               vcluster.STARTING_AT, vcluster.DELETING, vcluster.WOKEN_AHEAD}
    assert set(yaml.safe_load(trusted)) == guarded
    volumes = json.dumps(policies["vcs-hub-volumes"]["spec"])
    for name in (home.HOME_NAMESPACE_LABEL, home.RETIRED_HOME_LABEL, home.PROVISIONING_CLAIM):
        assert name in volumes
