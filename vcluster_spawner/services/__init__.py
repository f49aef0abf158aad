"""Hub-managed services: the lifecycle policy (``lifecycle``) and the status page (``status``).

Both run as separate processes started by the hub (``c.JupyterHub.services`` with a
``command``), talk to the hub's REST API with their service token and to the host cluster with
their own Kubernetes client, and reuse the spawner's configuration and ``VClusterOps``.
"""
