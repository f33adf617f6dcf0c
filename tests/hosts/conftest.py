"""The hosts commands are tested against real OpenSSH servers and a real Docker engine."""

from tests.docker_engine import docker_engine
from tests.sshd import ssh_server

__all__ = ["docker_engine", "ssh_server"]
