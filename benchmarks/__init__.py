"""Benchmarks of VClusterSpawner against plain KubeSpawner on the local cluster (issue 8).

``python -m benchmarks`` (``make bench``) runs them and writes ``results/latest.json`` and
``results/report.md`` with plots; sizes come from the environment (``settings.py``).
"""
