"""Fixtures shared by every test.

``no_leftover_tasks`` is applied to every async test: it fails a test that leaves asyncio
tasks running, because a leaked task is a leaked loop, server or runner in production.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
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
