"""Installing a backend (or a pool block) the way a distribution does: a ``*.dist-info`` folder
with an ``entry_points.txt`` in a directory on ``sys.path``, which ``importlib.metadata`` (and
so :func:`runnerscale.providers.registry.installed` and
:func:`runnerscale.config.blocks.installed`) reads exactly as it reads an installed wheel's.
No file under ``src/`` changes; a process started with the directory on ``PYTHONPATH`` sees
the backend, one without it does not."""

from __future__ import annotations

import os
from pathlib import Path

from runnerscale.config import blocks
from runnerscale.providers import registry

#: The repository root: where ``tests.plugins`` is importable from.
ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION = "runnerscale_test_backends"


def install(
    directory: Path, backends: dict[str, str], pool_blocks: dict[str, str] | None = None
) -> Path:
    """Write the distribution ``runnerscale-test-backends`` declaring ``backends`` and
    ``pool_blocks`` (name -> ``module:attribute``) under ``directory``; returns ``directory``
    (put it on sys.path)."""
    info = directory / f"{DISTRIBUTION}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DISTRIBUTION.replace('_', '-')}\nVersion: 0.1\n"
    )
    groups = {registry.ENTRY_POINT_GROUP: backends, blocks.ENTRY_POINT_GROUP: pool_blocks or {}}
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items())
            for group, entries in groups.items()
            if entries
        )
    )
    return directory


def python_path(directory: Path) -> str:
    """``PYTHONPATH`` for a process that should see the distribution (and import tests.*)."""
    extra = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(directory), str(ROOT), *([extra] if extra else [])])
