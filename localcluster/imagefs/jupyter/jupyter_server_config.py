# Stands in for a notebook image's /etc/jupyter config. Images run the server as an
# unprivileged user; here every pod process runs as root, which jupyter_server refuses
# without this.
c = get_config()  # noqa: F821
c.ServerApp.allow_root = True
