"""vcluster-spawner: a JupyterHub spawner that runs each user's notebook in their own vCluster."""

__version__ = "0.1.0.dev0"
