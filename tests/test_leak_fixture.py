"""The leftover-task guard itself: it must fail a test that leaks a task."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_a_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import asyncio

        async def test_leaks():
            asyncio.create_task(asyncio.sleep(3600), name="forgotten")

        async def test_clean():
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest(
        "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=2, errors=1)  # the leaky test errors at teardown
    result.stdout.fnmatch_lines(["*left 1 asyncio task(s) running: forgotten*"])
