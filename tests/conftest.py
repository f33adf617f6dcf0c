"""Fixtures shared by every test, and the markers that sort them.

``no_leftover_tasks`` is applied to every async test: it fails a test that leaves asyncio
tasks running, because a leaked task is a leaked loop, server or runner in production.
``fresh_plugins`` is for a test that installs a plug-in (``tests/plugins/entry_points.py``).

Markers (registered in ``pyproject.toml``) are applied here, by where a test lives and what it
uses, so that they stay true as tests are added: ``e2e`` and ``interop`` by directory,
``docker`` for a test that uses the session's Docker engine, ``postgres`` for one that uses the
session's PostgreSQL server (``postgres_url``, or a fixture parametrized ``"postgres"`` that
asks for it while it runs, like the store tests'), ``ssh`` for one that uses real OpenSSH
servers (``ssh_server`` on loopback, ``ssh_fleet`` in network namespaces; both need root),
``aws`` for one that uses the session's moto server (``moto_server``: every EC2 test).
``slow`` (a second or more here: a real process waited for, a whole simulation run) and
``chromium`` are put on the tests themselves (and ``ssh`` on a test that starts
its own server). ``scripts/check --quick`` deselects all of them; CI runs everything.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runnerscale.config import blocks
from runnerscale.providers import registry

TESTS = Path(__file__).parent
#: Tests under these directories get the marker of the same name.
DIRECTORY_MARKERS = ("e2e", "interop")
#: A test that uses one of these fixtures gets the marker.
FIXTURE_MARKERS = {
    "docker_engine": "docker",
    "runner_image": "docker",
    "daemon_image": "docker",
    "postgres_server": "postgres",
    "postgres_url": "postgres",
    "ssh_server": "ssh",
    "ssh_fleet": "ssh",
    "moto_server": "aws",
}


def _markers_for(item: pytest.Item) -> set[str]:
    markers: set[str] = set()
    relative = item.path.relative_to(TESTS) if item.path.is_relative_to(TESTS) else None
    if relative is not None and relative.parts[0] in DIRECTORY_MARKERS:
        markers.add(relative.parts[0])
    fixtures = getattr(item, "fixturenames", ())
    markers.update(marker for name, marker in FIXTURE_MARKERS.items() if name in fixtures)
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgres" in callspec.params.values():
        markers.add("postgres")  # a backend parameter: the fixture asks for postgres_url
    return markers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in sorted(_markers_for(item)):
            item.add_marker(marker)
        function = getattr(item, "function", None)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(function):
            # First in the list, so it is set up before and torn down after everything else.
            item.fixturenames.insert(0, "no_leftover_tasks")


@pytest.fixture
async def no_leftover_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    for _ in range(3):  # let tasks that are finishing finish
        await asyncio.sleep(0)
    leftover = [
        task for task in asyncio.all_tasks() - before if task is not current and not task.done()
    ]
    for task in leftover:
        task.cancel()
    if leftover:
        names = ", ".join(sorted(task.get_name() for task in leftover))
        pytest.fail(f"test left {len(leftover)} asyncio task(s) running: {names}")


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """The root logger as it was before the test: a command run in-process (``CliRunner``)
    sets up the daemon's logging on a stream closed after it, which a later test's records
    would otherwise be written to."""
    root = logging.getLogger()
    handlers, level, raising = list(root.handlers), root.level, logging.raiseExceptions
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.raiseExceptions = raising


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """The plug-in registries (backends, pool blocks) read their entry points again, and once
    more after the test (so a distribution the test put on ``sys.path`` is forgotten)."""
    caches = (registry.installed, blocks.installed)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()
