"""Backend tests run against real engines: the Docker tests against a dockerd of their own, the
SSH tests against real OpenSSH servers (one on loopback, or a fleet of namespace nodes)."""

import pytest

from tests.docker_engine import docker_engine, runner_image
from tests.sshd import ssh_server
from tests.sshfleet import ssh_fleet

# The conformance suite is a helper module: its asserts explain themselves like a test's.
pytest.register_assert_rewrite("tests.providers.conformance")

__all__ = ["docker_engine", "runner_image", "ssh_fleet", "ssh_server"]
