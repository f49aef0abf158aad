"""The real vCluster 0.36.1 on the local cluster (test and demo infrastructure).

``python -m localcluster up --plugin vcluster_real`` makes the local kubelet run the upstream
chart's control-plane pod with the upstream binaries that ``tools/build-vcluster.sh`` builds
from the Go module proxy: the syncer image (``ghcr.io/loft-sh/vcluster-*``, entrypoint
``/vcluster start``, upstream Dockerfile.release) and the init container's Kubernetes image
(``ghcr.io/loft-sh/kubernetes:*``, whose ``/kubernetes`` holds the control-plane binaries and
kine; upstream chart/templates/_init-containers.tpl copies it to ``/binaries``). Nothing of
vCluster is emulated: the CoreDNS it deploys inside each virtual cluster is the real one too
(built by ``localcluster.dns``) and forwards to the local cluster's own (docs/real-vcluster.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from localcluster.binaries import run_build_script

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "build-vcluster.sh"
VERSION = "0.36.1"
# what the Kubernetes image's /kubernetes holds (the kube-* binaries of the host's build serve:
# the chart's default distro is v1.36)
KUBERNETES_IMAGE_FILES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "helm")


def build(helm: Path | None, target: str = "vcluster") -> Path:
    """The directory ``tools/build-vcluster.sh`` builds ``target`` into on first use (a no-op
    when built): ``vcluster`` (the control plane, kine and the packaged chart; needs ``helm``),
    ``coredns`` or ``cli``."""
    return run_build_script(BUILD_SCRIPT, target, env={**os.environ, "HELM": str(helm)} if helm else None)


def cli() -> Path:
    """Upstream's ``vcluster`` command line at the same version, as an operator runs it."""
    return build(None, "cli") / "vcluster"


def chart(binaries: Path) -> Path:
    """The upstream chart at its release version, packaged by the build (``binaries``: the
    directory holding the local cluster's helm)."""
    return build(binaries / "helm") / f"vcluster-{VERSION}.tgz"


# the chart's init container `kubernetes` copies this image's /kubernetes to /binaries
KUBERNETES_IMAGE_RULE = {"image": "ghcr.io/loft-sh/kubernetes:*", "run": {"content": {"/kubernetes": "{vcluster_kubernetes}"}}}


def kubernetes_image(cluster, built: Path) -> Path:
    """The content of upstream's Kubernetes image on ``cluster`` (``built``: what ``build``
    returned): links to the host's control-plane binaries, helm and kine."""
    kubernetes = cluster.state_dir / "images" / "loft-sh-kubernetes"
    kubernetes.mkdir(parents=True, exist_ok=True)
    sources = {name: cluster.binaries / name for name in KUBERNETES_IMAGE_FILES} | {"kine": built / "kine"}
    for name, source in sources.items():
        link = kubernetes / name
        if not link.is_symlink():
            link.symlink_to(source)   # `cp -r` in the init container copies the link, not 100 MB
    return kubernetes


def register(cluster) -> None:
    """localcluster plugin hook."""
    built = build(cluster.binaries / "helm")
    cluster.images = cluster.images.extended([
        {"image": "ghcr.io/loft-sh/vcluster-*",
         "run": {"entrypoint": ["/vcluster", "start"], "content": {"/vcluster": "{vcluster}/vcluster"},
                 # vCluster writes /root/.kube/config (upstream pkg/util/kubeconfig/kubeconfig.go,
                 # hard-coded): the container's own, not this machine's
                 "private": ["/root/.kube"],
                 # binds 127.0.0.1:6443, :10257, :2381, :10099 and 0.0.0.0:8443
                 "network": "own"}},
        KUBERNETES_IMAGE_RULE,
        # CoreDNS inside the vCluster, the real one (localcluster/dns.py builds it). Its Corefile
        # serves .:1053 (upstream pkg/coredns/template.go); its Deployment declares no ports.
        {"image": "docker.io/coredns/coredns:*",
         "run": {"entrypoint": ["/coredns"], "content": {"/coredns": "{coredns}/coredns"},
                 "network": "own", "ports": ["1053/UDP", "1053/TCP"]}},
    ], source=__name__, vcluster=str(built), vcluster_kubernetes=str(kubernetes_image(cluster, built)))
