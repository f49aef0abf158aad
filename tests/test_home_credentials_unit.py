"""Pure parts of the home volume and credential design (no cluster)."""

from __future__ import annotations

import base64

import pytest
import yaml
from kubernetes_asyncio.client import V1Container, V1ObjectMeta, V1Pod, V1PodSpec, V1Volume
from traitlets import TraitError

from vcluster_spawner import credentials
from vcluster_spawner.home import (
    HOME_NAMESPACE_LABEL,
    RETIRED_HOME_LABEL,
    HomeSpec,
    claim_ref_fix,
    home_host_claim_name,
    kept_for_another,
    ownership_patch,
    provisioning_claim,
    validate_access_modes,
    virtual_home_claim,
)
from vcluster_spawner.notebook import add_wiring, cluster_wiring, home_wiring, merge_wiring
from vcluster_spawner.ownership import Owner
from vcluster_spawner.values import computed_values
from vcluster_spawner.vcluster import Ref

SPEC = HomeSpec("nfs", "5Gi", ("ReadWriteMany",), "home", "default")
REF = Ref("vc-alice", "vc-alice")


def test_the_home_claim_name_is_the_one_vcluster_gives_the_virtual_claim():
    assert home_host_claim_name(SPEC, REF) == "home-x-default-x-vc-alice"
    long_ref = Ref("ns", "v" * 50)
    assert len(home_host_claim_name(SPEC, long_ref)) == 63


def test_claim_ref_fix_reserves_the_volume_and_drops_only_a_stale_uid():
    pv = {"spec": {"claimRef": {"namespace": "vc-alice", "name": PROVISIONING_NAME, "uid": "u1"}}}
    assert claim_ref_fix(pv, "vc-alice", "home-x-default-x-vc-alice", None) == [
        {"op": "add", "path": "/spec/claimRef", "value": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                          "namespace": "vc-alice", "name": "home-x-default-x-vc-alice"}}]
    bound = {"spec": {"claimRef": {"namespace": "vc-alice", "name": "home-x-default-x-vc-alice", "uid": "u2",
                                   "resourceVersion": "7"}}}
    assert claim_ref_fix(bound, "vc-alice", "home-x-default-x-vc-alice", "u2") is None     # in use: untouched
    stale = claim_ref_fix(bound, "vc-alice", "home-x-default-x-vc-alice", None)            # claim gone
    assert stale == [{"op": "test", "path": "/spec/claimRef/uid", "value": "u2"},
                     {"op": "remove", "path": "/spec/claimRef/uid"},
                     {"op": "remove", "path": "/spec/claimRef/resourceVersion"}]
    assert claim_ref_fix(bound, "vc-alice", "home-x-default-x-vc-alice", "u3")[1]["op"] == "remove"  # a new claim
    reserved = {"spec": {"claimRef": {"namespace": "vc-alice", "name": "home-x-default-x-vc-alice"}}}
    assert claim_ref_fix(reserved, "vc-alice", "home-x-default-x-vc-alice", None) is None


PROVISIONING_NAME = provisioning_claim(SPEC, REF, Owner("alice"))["metadata"]["name"]


def test_ownership_is_one_write_with_retain_the_label_and_the_owner():
    patch = ownership_patch(REF, Owner("Alice Ü", "2026-12-01T10:00:00.000001Z"))
    assert patch["spec"] == {"persistentVolumeReclaimPolicy": "Retain"}
    assert patch["metadata"]["labels"]["hub.jupyter.org/home-namespace"] == "vc-alice"
    assert patch["metadata"]["annotations"] == {"hub.jupyter.org/owner": "Alice Ü",
                                                "hub.jupyter.org/owner-created": "2026-12-01T10:00:00.000001Z"}


def test_a_volume_kept_for_someone_else_is_never_taken_as_a_new_home():
    ref, alice = Ref("vc-alice", "vc-alice"), Owner("alice", "2026-01-01T00:00:00Z")

    def pv(labels=None, annotations=None):
        return {"metadata": {"name": "pv-1", "labels": labels or {}, "annotations": annotations or {}}}
    assert kept_for_another(pv(), ref, alice) is None                                  # a fresh volume
    assert kept_for_another(pv({HOME_NAMESPACE_LABEL: "vc-alice"}, alice.annotations()), ref, alice) is None
    assert "kept for namespace vc-bob" in kept_for_another(pv({HOME_NAMESPACE_LABEL: "vc-bob"}), ref, alice)
    assert "kept for namespace vc-bob" in kept_for_another(pv({RETIRED_HOME_LABEL: "vc-bob"}), ref, alice)
    assert "another owner" in kept_for_another(pv(annotations=Owner("bob").annotations()), ref, alice)
    newcomer = Owner("alice", "2026-06-01T00:00:00Z")
    assert "another owner" in kept_for_another(pv(annotations=alice.annotations()), ref, newcomer)


def test_the_virtual_claim_names_the_volume_and_its_class_even_when_empty():
    pv = {"metadata": {"name": "pvc-123"}, "spec": {"storageClassName": "nfs", "capacity": {"storage": "5Gi"}}}
    claim = virtual_home_claim(SPEC, pv)
    assert claim["spec"]["volumeName"] == "pvc-123" and claim["spec"]["storageClassName"] == "nfs"
    assert claim["metadata"]["annotations"] == {"vcluster.loft.sh/skip-translate": "true"}
    static = {"metadata": {"name": "home-alice"}, "spec": {"capacity": {"storage": "1Ti"}}}
    # an explicit "": a missing class would let the host's default class be injected
    assert virtual_home_claim(SPEC, static)["spec"]["storageClassName"] == ""


def test_home_access_modes_must_include_read_write_many():
    assert validate_access_modes(["ReadWriteMany", "ReadOnlyMany"]) == ("ReadWriteMany", "ReadOnlyMany")
    with pytest.raises(ValueError, match="must include ReadWriteMany"):
        validate_access_modes(["ReadWriteOnce"])
    from vcluster_spawner.spawner import VClusterSpawner
    with pytest.raises(TraitError, match="several|at once"):
        VClusterSpawner(_mock=True, home_access_modes=["ReadWriteOnce"])


def test_credentials_reach_the_vcluster_by_explicit_mappings_only():
    values = computed_values("vc-a", "vc-a", "work")
    mappings = values["sync"]["fromHost"]["secrets"]["mappings"]["byName"]
    assert mappings == {"/jupyter-kubeconfig": "work/kubeconfig", "/jupyter-s3": "work/s3-credentials"}
    assert not any(k in ("", "/*") or k.endswith("/*") for k in mappings)
    # all mapped Secrets are in the vCluster's own namespace: its namespaced Role suffices
    assert values["rbac"] == {"clusterRole": {"enabled": False}}
    assert values["sync"]["toHost"] == {"pods": {"useSecretsForSATokens": True}}
    assert computed_values("vc-a", "vc-a", sync_service_accounts=True)["sync"]["toHost"] == {
        "pods": {"useSecretsForSATokens": True}, "serviceAccounts": {"enabled": True}}


def test_external_api_host_gets_a_san_and_its_own_kubeconfig_secret():
    values = computed_values("vc-a", "vc-a", external_host="a.k8s.example.org", external_context="alice")
    assert "a.k8s.example.org" in values["controlPlane"]["proxy"]["extraSANs"]
    assert values["exportKubeConfig"]["additionalSecrets"] == [
        {"name": "vc-vc-a-external", "server": "https://a.k8s.example.org", "context": "alice"}]
    assert "additionalSecrets" not in computed_values("vc-a", "vc-a")["exportKubeConfig"]


def test_user_kubeconfig_points_at_the_server_with_one_named_context():
    exported = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "Default",
        "clusters": [{"name": "c", "cluster": {"server": "https://localhost:8443", "certificate-authority-data": "Q0E="}}],
        "users": [{"name": "u", "user": {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"}}],
        "contexts": [{"name": "Default", "context": {"cluster": "c", "user": "u"}}]}).encode()
    config = yaml.safe_load(credentials.user_kubeconfig(exported, "https://10.0.0.1:443", "alice", "default"))
    assert config["current-context"] == "alice"
    assert config["clusters"] == [{"name": "alice", "cluster": {"server": "https://10.0.0.1:443",
                                                                "certificate-authority-data": "Q0E="}}]
    assert config["users"][0]["user"]["client-key-data"] == "a2V5"
    assert config["contexts"][0]["context"]["namespace"] == "default"


def test_s3_values_are_checked_without_echoing_them():
    assert credentials.checked_s3_values({"AWS_ACCESS_KEY_ID": "a"}) == {"AWS_ACCESS_KEY_ID": "a"}
    with pytest.raises(ValueError) as bad_key:
        credentials.checked_s3_values({"aws-key": "s3cr3t-value", "OK": "x"})
    assert "aws-key" in str(bad_key.value) and "s3cr3t-value" not in str(bad_key.value)
    with pytest.raises(ValueError) as not_text:
        credentials.checked_s3_values({"PORT": 443})
    assert "PORT" in str(not_text.value) and "443" not in str(not_text.value)


def test_host_secrets_carry_a_fresh_revision_and_encoded_data():
    data = credentials.encode({"config": b"kubeconfig", "TOKEN": "t"})
    assert base64.b64decode(data["config"]) == b"kubeconfig"
    first = credentials.host_secret("jupyter-s3", "vc-a", data)
    second = credentials.host_secret("jupyter-s3", "vc-a", data)
    assert first["metadata"]["annotations"] != second["metadata"]["annotations"]


def _pod(volumes=()):
    return V1Pod(metadata=V1ObjectMeta(name="jupyter-a"),
                 spec=V1PodSpec(containers=[V1Container(name="notebook"), V1Container(name="sidecar")],
                                volumes=list(volumes)))


def test_the_notebook_container_gets_home_and_credentials():
    wiring = merge_wiring(credentials.notebook_wiring("/var/run/secrets/jupyter", with_s3=True),
                          home_wiring("home", "/home/jovyan"))
    pod = add_wiring(_pod(), wiring)
    notebook, sidecar = pod.spec.containers
    assert [v.name for v in pod.spec.volumes] == ["vcluster-kubeconfig", "s3-credentials", "home"]
    # nested fields stay dicts, as in KubeSpawner (serialised as they are)
    assert pod.spec.volumes[2].persistent_volume_claim == {"claimName": "home"}
    assert {m.mount_path for m in notebook.volume_mounts} == {
        "/var/run/secrets/jupyter/kubeconfig", "/var/run/secrets/jupyter/s3", "/home/jovyan"}
    assert [(e.name, e.value) for e in notebook.env] == [("KUBECONFIG", "/var/run/secrets/jupyter/kubeconfig/config")]
    assert notebook.env_from[0].secret_ref == {"name": "s3-credentials"}
    assert sidecar.volume_mounts is None and sidecar.env is None
    without_s3 = credentials.notebook_wiring("/creds", with_s3=False)
    assert without_s3["env_from"] == [] and [v["name"] for v in without_s3["volumes"]] == ["vcluster-kubeconfig"]


def test_a_profile_volume_may_not_take_a_reserved_name():
    with pytest.raises(ValueError, match="home are reserved"):
        add_wiring(_pod([V1Volume(name="home")]), home_wiring("home", "/home/jovyan"))


@pytest.mark.parametrize("stop_action, ephemeral", [("delete", "true"), ("sleep", "false"), ("none", "false")])
def test_the_notebook_is_told_its_cluster_and_whether_a_stop_deletes_it(stop_action, ephemeral):
    env = {e["name"]: e["value"] for e in cluster_wiring("vc-bea", "vc-bea-ns", stop_action)["env"]}
    assert env == {"VCLUSTER_NAME": "vc-bea", "VCLUSTER_HOST_NAMESPACE": "vc-bea-ns", "VCLUSTER_STOP_ACTION": stop_action,
                   "VCLUSTER_EPHEMERAL": ephemeral}
