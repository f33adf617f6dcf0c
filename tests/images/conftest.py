"""The daemon image's test runs it on the session's own Docker engine."""

from tests.daemon_image import daemon_image
from tests.docker_engine import docker_engine

__all__ = ["daemon_image", "docker_engine"]
