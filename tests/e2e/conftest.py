"""End-to-end tests may keep their state in the session's real PostgreSQL server, and run
runners in containers on the session's own Docker engine."""

from tests.docker_engine import docker_engine, runner_image
from tests.postgres import postgres_server, postgres_url

__all__ = ["docker_engine", "postgres_server", "postgres_url", "runner_image"]
