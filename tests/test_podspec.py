"""Unit tests of the local kubelet's pure pod-spec logic (no cluster)."""

import pytest

from localcluster import podspec
from localcluster.podspec import ImageMap, PodSpecError


def pod(**spec):
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"},
                     "annotations": {"a": "b"}},
        "spec": {"nodeName": "n0", "serviceAccountName": "sa", "containers": [], **spec},
        "status": {"podIP": "127.1.0.7"},
    }


def test_image_map_first_match_wins_and_unmapped_is_a_clear_error():
    images = ImageMap.parse([
        {"image": "python:*", "run": {"entrypoint": ["python3"]}},
        {"image": "*", "simulate": "plain"},
    ], source="rules.yaml")
    assert images.rule_for("python:3.12").run
    assert images.rule_for("ghcr.io/x").simulate == "plain"
    with pytest.raises(PodSpecError, match="not mapped.*rules.yaml"):
        ImageMap.parse([{"image": "python:*", "run": {}}], source="rules.yaml").rule_for("ubuntu")


def test_a_plugin_extends_the_map_with_rules_matched_first_and_placeholders_for_paths():
    base = ImageMap.parse([{"image": "ghcr.io/loft-sh/vcluster-*", "simulate": "vcluster"},
                           {"image": "python:*", "run": {"env": {"CONF": "{imagefs}/jupyter"}}}], source="images.yaml")
    images = base.extended(imagefs="/opt/imagefs").extended([
        {"image": "ghcr.io/loft-sh/vcluster-*", "run": {"entrypoint": ["/vcluster", "start"], "network": "own",
                                                        "content": {"/vcluster": "{built}/vcluster"},
                                                        "private": ["/root/.kube"]}},
    ], source="plugin", built="/cache/vc")
    real = images.rule_for("ghcr.io/loft-sh/vcluster-pro:0.36.1")
    assert real.run and real.own_network and real.content == (("/vcluster", "/cache/vc/vcluster"),)
    assert real.private == ("/root/.kube",) and not images.rule_for("python:3.11").private
    assert dict(images.rule_for("python:3.11").env) == {"CONF": "/opt/imagefs/jupyter"}
    assert not images.rule_for("python:3.11").own_network
    assert base.rule_for("ghcr.io/loft-sh/vcluster-pro:0.36.1").simulate == "vcluster", "the base map is unchanged"
    with pytest.raises(ValueError, match="network is 'shared'"):
        ImageMap.parse([{"image": "x", "run": {"network": "host"}}])


def test_an_unmapped_image_is_its_own_error_so_the_container_can_wait_for_it():
    with pytest.raises(podspec.ImageNotMapped):
        ImageMap.parse([]).rule_for("example.org/unknown:1")


def test_image_rule_needs_run_or_simulate():
    with pytest.raises(ValueError, match="exactly one"):
        ImageMap.parse([{"image": "x"}])
    with pytest.raises(ValueError, match="exactly one"):
        ImageMap.parse([{"image": "x", "run": {}, "simulate": "plain"}])


def test_argv_combines_command_args_entrypoint_and_cmd_as_kubernetes_does():
    rule = ImageMap.parse([{"image": "*", "run": {"entrypoint": ["tini", "--"], "cmd": ["start.sh"]}}]).rule_for("i")
    assert rule.argv({"name": "c"}) == ["tini", "--", "start.sh"]
    assert rule.argv({"name": "c", "args": ["jupyterhub-singleuser"]}) == ["tini", "--", "jupyterhub-singleuser"]
    assert rule.argv({"name": "c", "command": ["sh", "-c"], "args": ["echo"]}) == ["sh", "-c", "echo"]
    assert rule.argv({"name": "c", "command": ["sh"]}) == ["sh"]
    bare = ImageMap.parse([{"image": "*", "run": {}}]).rule_for("i")
    with pytest.raises(PodSpecError, match="no command or args"):
        bare.argv({"name": "c", "image": "i"})


def test_env_precedence_refs_and_expansion():
    container = {
        "name": "c",
        "envFrom": [{"secretRef": {"name": "s"}, "prefix": "S_"}, {"configMapRef": {"name": "cm"}}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "K", "value": "from-env"},
        ],
    }
    env = podspec.container_env(
        container, pod(), secrets={"s": {"pw": "hunter2"}}, config_maps={"cm": {"K": "from-cm"}},
        base={"PATH": "/bin", "A": "base"},
    )
    assert env["PATH"] == "/bin"
    assert env["S_pw"] == "hunter2" and env["PW"] == "hunter2"
    assert env["A"] == "1"
    assert env["B"] == "1-$(MISSING)-$(A)"
    assert env["IP"] == "127.1.0.7" and env["APP"] == "x"
    assert "OPT" not in env
    assert env["K"] == "from-env"


def test_env_missing_required_secret_fails():
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(PodSpecError, match="secret 's' not found"):
        podspec.container_env(container, pod(), secrets={}, config_maps={}, base={})


def test_plan_volumes_covers_every_supported_type():
    p = pod(volumes=[
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-1"}},
        {"name": "sec", "secret": {"secretName": "s", "items": [{"key": "pw", "path": "dir/pw"}]}},
        {"name": "cfg", "configMap": {"name": "cm"}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": "/srv"}},
        {"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "cm", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}},
    ])
    plan = podspec.plan_volumes(p, secrets={"s": {"pw": b"x"}}, config_maps={"cm": {"ca.crt": b"CA"}})
    assert plan.claims == {"home": "claim-1"}
    assert plan.files["sec"] == {"dir/pw": b"x"}
    assert plan.files["cfg"] == {"ca.crt": b"CA"}
    assert plan.files["api"] == {"ca.crt": b"CA", "namespace": b"ns"}
    assert plan.tokens["api"][0]["path"] == "token"
    assert plan.empty_dirs == ["tmp"] and plan.host_paths == {"host": "/srv"}


def test_plan_volumes_rejects_unknown_types_and_missing_inputs():
    with pytest.raises(PodSpecError, match=r"type \['nfs'\] is not supported"):
        podspec.plan_volumes(pod(volumes=[{"name": "v", "nfs": {"server": "x", "path": "/"}}]),
                             secrets={}, config_maps={})
    with pytest.raises(PodSpecError, match="secret 's' not found"):
        podspec.plan_volumes(pod(volumes=[{"name": "v", "secret": {"secretName": "s"}}]),
                             secrets={}, config_maps={})
    optional = podspec.plan_volumes(
        pod(volumes=[{"name": "v", "secret": {"secretName": "s", "optional": True}}]), secrets={}, config_maps={})
    assert optional.files["v"] == {}


def test_container_mounts_subpath_and_escape():
    dirs = {"home": "/data/pv1"}
    c = {"name": "c", "volumeMounts": [{"name": "home", "mountPath": "/home/u", "subPath": "u", "readOnly": True}]}
    assert podspec.container_mounts(c, dirs) == [podspec.Mount("/data/pv1/u", "/home/u", True)]
    bad = {"name": "c", "volumeMounts": [{"name": "home", "mountPath": "/x", "subPath": "../../etc"}]}
    with pytest.raises(PodSpecError, match="relative path inside"):
        podspec.container_mounts(bad, dirs)
    with pytest.raises(PodSpecError, match="unknown volume"):
        podspec.container_mounts({"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, dirs)


def test_ip_pool_is_unique_and_reuses_released():
    pool = podspec.IPPool("127.200.0.0/16")
    a, b = pool.allocate(), pool.allocate()
    assert a != b and a.startswith("127.200.")
    pool.release(a)
    assert pool.allocate() == a


def test_readiness_target_prefers_probe_then_first_port():
    assert podspec.readiness_target({"name": "c"}) is None
    assert podspec.readiness_target({"name": "c", "ports": [{"containerPort": 8888}]}) == ("tcp", 8888, None)
    c = {"name": "c", "ports": [{"containerPort": 8888, "name": "web"}],
         "readinessProbe": {"httpGet": {"port": "web", "path": "/api"}}}
    assert podspec.readiness_target(c) == ("http", "web", "/api")
    tls = {"name": "c", "readinessProbe": {"httpGet": {"port": 8443, "path": "/readyz", "scheme": "HTTPS"}}}
    assert podspec.readiness_target(tls) == ("https", 8443, "/readyz")
    assert podspec.resolve_port(c, "web") == 8888


def test_resolv_conf_follows_the_dns_policy_as_a_kubelet_writes_it():
    cluster_first = podspec.resolv_conf(pod(), "127.96.0.10")
    assert cluster_first == ("nameserver 127.96.0.10\n"
                             "search ns.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
    # the node's own: Default, a host-network ClusterFirst, or no cluster DNS configured
    assert podspec.resolv_conf(pod(dnsPolicy="Default"), "127.96.0.10") is None
    assert podspec.resolv_conf(pod(hostNetwork=True), "127.96.0.10") is None
    assert podspec.resolv_conf(pod(), None) is None
    assert podspec.resolv_conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), "10.0.0.10").startswith(
        "nameserver 10.0.0.10\n")
    # None: dnsConfig alone (what vCluster's syncer gives tenants' pods)
    translated = pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["127.96.4.2"], "searches": ["default.svc.cluster.local", "svc.cluster.local"],
        "options": [{"name": "ndots", "value": "5"}, {"name": "edns0"}]})
    assert podspec.resolv_conf(translated, "127.96.0.10") == (
        "nameserver 127.96.4.2\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5 edns0\n")
    # ClusterFirst merges dnsConfig, without duplicates
    merged = podspec.resolv_conf(pod(dnsConfig={"nameservers": ["1.1.1.1", "127.96.0.10"],
                                                "options": [{"name": "ndots", "value": "2"}]}), "127.96.0.10")
    assert podspec.nameservers(merged) == ["127.96.0.10", "1.1.1.1"] and "ndots:2" in merged


def test_a_pod_is_told_of_kubernetes_apis_only_by_literal_environment_values():
    told = pod(containers=[{"name": "a", "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.96.3.4"},
                                                 {"name": "KUBERNETES_SERVICE_PORT", "value": "443"}]},
                           {"name": "b", "env": [{"name": "KUBERNETES_SERVICE_HOST", "valueFrom": {}}]}])
    assert podspec.kubernetes_api_addresses(told) == {("127.96.3.4", 443)}
    assert podspec.kubernetes_api_addresses(pod(containers=[{"name": "c"}])) == set()


def test_image_rule_ports_default_to_tcp_and_reject_what_is_not_a_port():
    rules = ImageMap.parse([{"image": "dns:*", "run": {"ports": ["1053/udp", 9153], "network": "own"}}])
    assert rules.rule_for("dns:1").ports == ((1053, "UDP"), (9153, "TCP"))
    with pytest.raises(ValueError, match="is not PORT or PORT/TCP or PORT/UDP"):
        ImageMap.parse([{"image": "dns:*", "run": {"ports": ["53/sctp"]}}])
