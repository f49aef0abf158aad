"""An example spawn page: vCluster sizes (quota, limits, Kubernetes version) and notebook images.

Each profile sets the vCluster's values through ``kubespawner_override: {vcluster_values: …}``
(merged recursively into ``VClusterSpawner.vcluster_values``), and the notebook's own requests.
Unknown profiles and choices that are not offered (a tampered form or REST call) are refused
with a message naming the valid ones. Not applied when ``profile_list`` is already configured.
"""
c = get_config()  # noqa: F821


def _size(cpu: int, memory_gi: int, pods: int) -> dict:
    """vcluster_values for a vCluster of this size: a ResourceQuota on everything in the user's
    host namespace (the vCluster's control plane too: it requests 200m CPU and 256Mi and is
    limited to 4Gi of memory), limits twice the requests, and a LimitRange so that pods without
    requests get some and fit in the quota."""
    return {"policies": {
        "resourceQuota": {"enabled": True, "quota": {
            "requests.cpu": str(cpu), "requests.memory": f"{memory_gi}Gi",
            "limits.cpu": str(2 * cpu), "limits.memory": f"{2 * memory_gi}Gi", "count/pods": str(pods)}},
        "limitRange": {"enabled": True,
                       "default": {"cpu": "500m", "memory": "512Mi"},
                       "defaultRequest": {"cpu": "100m", "memory": "128Mi"}},
    }}


_IMAGES = {
    "sample": {"display_name": "JupyterHub sample (small, fast)", "default": True,
               "kubespawner_override": {"image": "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"}},
    "scipy": {"display_name": "Jupyter SciPy stack",
              "kubespawner_override": {"image": "quay.io/jupyter/scipy-notebook:2025-03-14"}},
}
_KUBERNETES = {
    "1.36": {"display_name": "Kubernetes 1.36", "default": True, "kubespawner_override": {
        "vcluster_values": {"controlPlane": {"distro": {"k8s": {"image": {"tag": "v1.36.0"}}}}}}},
    "1.35": {"display_name": "Kubernetes 1.35", "kubespawner_override": {
        "vcluster_values": {"controlPlane": {"distro": {"k8s": {"image": {"tag": "v1.35.4"}}}}}}},
}

if "profile_list" not in c.VClusterSpawner:
    c.VClusterSpawner.profile_list = [
        {"display_name": "Small virtual cluster", "slug": "small", "default": True,
         "description": "2 CPUs and 4 GiB requested by everything in your cluster, 20 pods",
         "kubespawner_override": {"cpu_guarantee": 0.1, "mem_guarantee": "256M", "mem_limit": "1G",
                                  "vcluster_values": _size(2, 4, 20)},
         "profile_options": {"image": {"display_name": "Image", "choices": _IMAGES},
                             "kubernetes": {"display_name": "Kubernetes", "choices": _KUBERNETES}}},
        {"display_name": "Large virtual cluster", "slug": "large",
         "description": "8 CPUs and 32 GiB requested by everything in your cluster, 100 pods",
         "kubespawner_override": {"cpu_guarantee": 0.5, "mem_guarantee": "1G", "mem_limit": "4G",
                                  "vcluster_values": _size(8, 32, 100)},
         "profile_options": {"image": {"display_name": "Image", "choices": _IMAGES},
                             "kubernetes": {"display_name": "Kubernetes", "choices": _KUBERNETES}}},
    ]
