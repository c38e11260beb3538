"""Docker Swarm backend: one swarm service per workspace, from the same policy and checks.

`ProjectSwarmSpawner` (`hub.backend: swarm`) reuses `tre.hub.spawner.ProjectSpawner`'s
policy, dataset and firewall checks; `tre.swarm.networks` keeps the per-project overlays
and the node's confined gateway bridge; `tre.swarm.service` is the hardened service spec.
"""
