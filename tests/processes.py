"""What the processes of this host show to others: their command lines (and environments),
and where they work (a backend's runners are the processes working in its folders).

Why apart: the provider conformance suite and the end-to-end secret scan both read ``/proc``
for secrets, and a test module importing the suite (a module pytest rewrites for its asserts)
would import it too early.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["processes_showing", "processes_under"]


def processes_showing(
    needles: Iterable[str], *, environ: bool = False, exclude: Iterable[int] = ()
) -> list[str]:
    """Processes of this host whose command line (and, with ``environ``, whose environment)
    contains one of ``needles``, described without the needle (pid, file, program)."""
    wanted = [needle.encode() for needle in needles]
    skipped = {os.getpid(), *exclude}
    files = ("cmdline", "environ") if environ else ("cmdline",)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skipped:
            continue
        for name in files:
            try:
                content = (entry / name).read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if any(needle in content for needle in wanted):
                program = "?"
                with contextlib.suppress(OSError):
                    program = (entry / "comm").read_text().strip()
                found.append(f"pid {entry.name} ({program}) in its {name}")
    return found


def processes_under(root: Path) -> list[int]:
    """Processes whose working directory is in ``root`` (runners and what they started; a
    zombie has none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            found.append(int(entry.name))
    return found
