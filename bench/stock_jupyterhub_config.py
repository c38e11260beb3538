"""Stock JupyterHub + DockerSpawner, set up as their documentation shows, for bench/spawn.py only.

The baseline jupyter-tre is compared with: the same workspace image, started by
plain DockerSpawner on Docker's default bridge, behind the same
configurable-http-proxy. NOT a deployment: SharedPasswordAuthenticator with a
random password (the replacement JupyterHub 5.3+ names for
`DummyAuthenticator.password`, which is deprecated) lets the bench log in
through the login form; it is fine for a benchmark on loopback and nowhere else.
bench/spawn.py passes ports and paths as JSON in SPAWN_BENCH_STOCK.
"""

import json
import os

if __name__ == "__main__":  # `make bench` runs every bench/*.py; JupyterHub loads this file
    print("a JupyterHub config file for bench/spawn.py, not a benchmark: nothing to run")
    raise SystemExit(0)

s = json.loads(os.environ["SPAWN_BENCH_STOCK"])
state = s["state_dir"]

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by JupyterHub

c.JupyterHub.bind_url = s["public_url"]
# The hub listens on the default bridge's gateway, where containers reach it.
c.JupyterHub.hub_ip = s["hub_ip"]
c.JupyterHub.hub_port = s["hub_port"]
c.JupyterHub.hub_connect_ip = s["hub_ip"]
c.ConfigurableHTTPProxy.command = [s["proxy_command"]]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s['proxy_api_port']}"
c.ConfigurableHTTPProxy.pid_file = f"{state}/proxy.pid"
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{state}/jupyterhub.pid"

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = s["password"]
c.Authenticator.allowed_users = {s["user"]}

c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = s["image"]
c.DockerSpawner.remove = True
c.DockerSpawner.pull_policy = "never"  # the image is local; never contact a registry
c.DockerSpawner.prefix = s["container_prefix"]
