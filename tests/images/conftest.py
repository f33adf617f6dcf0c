"""The daemon image's test runs it on the session's own Docker engine; the ec2 boot script's
tests run against moto in server mode."""

from tests.daemon_image import daemon_image
from tests.docker_engine import docker_engine
from tests.moto_server import ec2_setup, moto_server

__all__ = ["daemon_image", "docker_engine", "ec2_setup", "moto_server"]
