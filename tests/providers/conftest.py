"""Backend tests run against real engines: the Docker tests against a dockerd of their own."""

from tests.docker_engine import docker_engine, runner_image

__all__ = ["docker_engine", "runner_image"]
