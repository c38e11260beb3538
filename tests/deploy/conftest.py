"""The Docker fixtures of tests/e2e (the engine, the workspace image built once per run),
shared with the deployment tests."""

from tests.e2e.conftest import docker_engine, workspace_build, workspace_image

__all__ = ["docker_engine", "workspace_build", "workspace_image"]
