"""Backend tests run against real engines: the Docker tests against a dockerd of their own, the
SSH tests against real OpenSSH servers (one on loopback, or a fleet of namespace nodes), the EC2
tests against moto in server mode behind a fault-injecting proxy."""

import pytest

from tests.docker_engine import docker_engine, runner_image
from tests.moto_server import aws_environment, ec2_setup, moto_server
from tests.sshd import ssh_server
from tests.sshfleet import ssh_fleet

# The conformance suite is a helper module: its asserts explain themselves like a test's.
pytest.register_assert_rewrite("tests.providers.conformance")

__all__ = [
    "aws_environment",
    "docker_engine",
    "ec2_setup",
    "moto_server",
    "runner_image",
    "ssh_fleet",
    "ssh_server",
]
