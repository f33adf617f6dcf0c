"""End-to-end tests may keep their state in the session's real PostgreSQL server."""

from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
