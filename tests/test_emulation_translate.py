"""Unit tests of the emulated syncer's pure translation rules (no cluster)."""

from vcluster_emulation import translate as tr
from vcluster_emulation.config import VClusterConfig, parse_secret_mappings


def virtual_pod():
    return {
        "metadata": {"name": "nb", "namespace": "default", "uid": "u-1", "labels": {"app": "nb", "release": "x"}},
        "spec": {
            "serviceAccountName": "default", "nodeName": "virtual-node", "priorityClassName": "high",
            "containers": [{"name": "c", "image": "i", "env": [
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]}],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": "home"}},
                {"name": "data", "nfs": {"server": "nfs.example", "path": "/x"}},
                {"name": "kube-api-access", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                                                "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
            ],
        },
    }


def translate(**kw):
    args = dict(vcluster="vc", host_namespace="user-a", owner={"name": "vc", "uid": "svc-uid"},
                workload_sa="vc-workload-vc", kubernetes_ip="127.99.0.5", dns_ip="127.99.0.10",
                cluster_domain="cluster.local", token="TOKEN")
    args.update(kw)
    return tr.translate_pod(virtual_pod(), **args)


def test_pod_identity_labels_and_owner():
    pod = translate()
    meta = pod["metadata"]
    assert meta["name"] == "nb-x-default-x-vc" and meta["namespace"] == "user-a"
    assert meta["labels"]["app"] == "nb"
    assert "release" not in meta["labels"]  # reserved keys are rewritten
    assert any(k.startswith("vcluster.loft.sh/label-vc-x-") for k in meta["labels"])
    assert meta["labels"]["vcluster.loft.sh/managed-by"] == "vc"
    assert meta["annotations"]["vcluster.loft.sh/object-kind"] == "/v1, Kind=Pod"
    assert meta["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Service", "name": "vc",
                                          "uid": "svc-uid", "controller": False}


def test_pod_spec_rewrites():
    spec = translate()["spec"]
    assert "nodeName" not in spec and "priorityClassName" not in spec
    assert spec["serviceAccountName"] == "vc-workload-vc"
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "home-x-default-x-vc"
    assert volumes["data"] == {"name": "data", "nfs": {"server": "nfs.example", "path": "/x"}}  # untouched
    sources = volumes["kube-api-access"]["projected"]["sources"]
    token_path = sources[0]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]
    assert token_path.startswith("metadata.annotations['vcluster.loft.sh/token-")
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt-x-default-x-vc"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['vcluster.loft.sh/namespace']"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"]["value"] == "127.99.0.5"
    assert env["PW"]["valueFrom"]["secretKeyRef"]["name"] == "s3-x-default-x-vc"
    assert spec["dnsPolicy"] == "None" and spec["dnsConfig"]["nameservers"] == ["127.99.0.10"]
    assert spec["hostAliases"][0]["ip"] == "127.99.0.5"


def test_service_links_become_variables_and_the_pods_own_win():
    """upstream pods/translate envvars.go: each virtual Service with a cluster IP in the pod's
    namespace, when the pod enables service links (the virtual API server's default)."""
    web = {"metadata": {"name": "my-web"}, "spec": {"clusterIP": "127.99.0.7", "ports": [
        {"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]}}
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}
    pod = virtual_pod()
    pod["spec"]["enableServiceLinks"] = True
    pod["spec"]["containers"][0]["env"].append({"name": "MY_WEB_SERVICE_PORT", "value": "mine"})
    env = tr.translate_pod(pod, vcluster="vc", host_namespace="user-a", owner=None, workload_sa="w",
                           kubernetes_ip="127.99.0.5", dns_ip="127.99.0.10", cluster_domain="cluster.local",
                           token=None, services=[web, headless])["spec"]["containers"][0]["env"]
    values = {e["name"]: e.get("value") for e in env}
    assert values["MY_WEB_SERVICE_HOST"] == "127.99.0.7" and values["MY_WEB_SERVICE_PORT_HTTP"] == "80"
    assert values["MY_WEB_PORT"] == "tcp://127.99.0.7:80" and values["MY_WEB_PORT_53_UDP"] == "udp://127.99.0.7:53"
    assert values["MY_WEB_PORT_53_UDP_PROTO"] == "udp" and values["MY_WEB_PORT_80_TCP_ADDR"] == "127.99.0.7"
    assert values["MY_WEB_SERVICE_PORT"] == "mine" and [e["name"] for e in env].count("MY_WEB_SERVICE_PORT") == 1
    assert not any(name.startswith("DB_") for name in values)
    added = [e["name"] for e in env][:[e["name"] for e in env].index("NS")]
    assert added == sorted(added) and "KUBERNETES_SERVICE_HOST" in added
    pod["spec"]["enableServiceLinks"] = False
    env = tr.translate_pod(pod, vcluster="vc", host_namespace="user-a", owner=None, workload_sa="w",
                           kubernetes_ip="127.99.0.5", dns_ip="127.99.0.10", cluster_domain="cluster.local",
                           token=None, services=[web])["spec"]["containers"][0]["env"]
    assert not any(e["name"].startswith("MY_WEB_") and e["name"] != "MY_WEB_SERVICE_PORT" for e in env)
    assert any(e["name"] == "KUBERNETES_SERVICE_HOST" for e in env)


def test_pod_token_lives_in_an_annotation():
    pod = translate()
    tokens = {k: v for k, v in pod["metadata"]["annotations"].items() if k.startswith(tr.TOKEN_PREFIX)}
    assert list(tokens.values()) == ["TOKEN"]


def test_orphan_rule_needs_full_annotations():
    host = {"metadata": {"name": "a-x-default-x-vc", "namespace": "ns", "annotations": {
        tr.OBJECT_NAME: "a", tr.OBJECT_NAMESPACE: "default", tr.OBJECT_KIND: "/v1, Kind=Pod",
        tr.OBJECT_HOST_NAME: "a-x-default-x-vc", tr.OBJECT_HOST_NAMESPACE: "ns"}}}
    assert tr.should_delete_orphan(host, "Pod")
    legacy = {"metadata": {"name": "a-x-default-x-vc", "namespace": "ns", "annotations": {
        tr.OBJECT_NAME: "a", tr.OBJECT_NAMESPACE: "default"}}}
    assert not tr.should_delete_orphan(legacy, "Pod")


def test_secret_mappings_follow_upstream_matching_order():
    mappings = parse_secret_mappings({
        "": "default", "shared/*": "default/*", "/own": "default/own-copy", "shared/ca": "default/my-ca"}, "user-a")
    order = [(m.host_namespace, m.host_name) for m in mappings]
    assert order == [("shared", "ca"), ("shared", "*"), ("user-a", "own"), ("user-a", "*")]


def test_config_defaults_and_overrides():
    config = VClusterConfig.parse("experimental: {syncSettings: {setOwner: false}}", "vc", "ns")
    assert config.set_owner is False and config.cluster_domain == "cluster.local"
    assert config.workload_service_account == "vc-workload-vc"
    assert config.secret_mappings == []
