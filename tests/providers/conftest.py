"""Backend tests run against real engines: the Docker tests against a dockerd of their own."""

import pytest

from tests.docker_engine import docker_engine, runner_image

# The conformance suite is a helper module: its asserts explain themselves like a test's.
pytest.register_assert_rewrite("tests.providers.conformance")

__all__ = ["docker_engine", "runner_image"]
