"""``runnerscale run`` with a mark at each phase of its start, for ``benchmarks/startup.py``.

Run as ``python benchmarks/startup_phases.py -m runnerscale run -c CONFIG``: it prints, on
standard error, ``phase WALL CPU NAME`` lines (seconds since the process started, and CPU
seconds used by then) when the command module and the daemon are imported, around reading
the config, building the daemon (opening the state), checking the credentials, and at the first
``/healthz``; then runs the command as ``python -m runnerscale`` would.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_age() -> float:
    """Seconds since this process started (``/proc``), so interpreter start-up counts too."""
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started / CLOCK_TICKS


_ORIGIN = time.perf_counter() - _process_age()


def mark(name: str) -> None:
    wall = time.perf_counter() - _ORIGIN
    print(f"phase {wall:.3f} {time.process_time():.3f} {name}", file=sys.stderr, flush=True)


def _around(owner: Any, name: str, label: str) -> None:
    """Marks before and after ``owner.name`` (a function, or a coroutine function)."""
    original: Callable[..., Any] = getattr(owner, name)
    if hasattr(original, "__func__"):  # a classmethod, bound
        function = original.__func__

        def bound(cls: Any, *args: Any, **kwargs: Any) -> Any:
            mark(f"{label} begins")
            result = function(cls, *args, **kwargs)
            mark(f"{label} ends")
            return result

        setattr(owner, name, classmethod(bound))
        return
    if _is_coroutine(original):

        async def waited(*args: Any, **kwargs: Any) -> Any:
            mark(f"{label} begins")
            result = await original(*args, **kwargs)
            mark(f"{label} ends")
            return result

        setattr(owner, name, waited)
        return

    def called(*args: Any, **kwargs: Any) -> Any:
        mark(f"{label} begins")
        result = original(*args, **kwargs)
        mark(f"{label} ends")
        return result

    setattr(owner, name, called)


def _is_coroutine(function: Callable[..., Any]) -> bool:
    import inspect  # noqa: PLC0415 - after the first mark

    return inspect.iscoroutinefunction(function)


def main() -> None:
    mark("interpreter up")
    from runnerscale import cli  # noqa: PLC0415 - timed

    mark("command module imported")
    from runnerscale import daemon, server  # noqa: PLC0415 - timed

    mark("daemon imported")
    _around(cli, "_check", "config")
    _around(daemon.Daemon, "build", "build")
    _around(daemon, "open_store", "open state")
    _around(daemon.Daemon, "check_access", "credentials check")
    health = server.DaemonHTTP.health
    seen: list[bool] = []

    async def first_health(self: Any, request: Any) -> Any:
        if not seen:
            seen.append(True)
            mark("first /healthz")
        return await health(self, request)

    server.DaemonHTTP.health = first_health  # type: ignore[method-assign]
    arguments = sys.argv[1:]
    if arguments[:2] == ["-m", "runnerscale"]:
        arguments = arguments[2:]
    sys.argv = ["runnerscale", *arguments]
    cli.app()


if __name__ == "__main__":
    main()
