"""The daemon's image (``images/daemon``) for tests, built without a registry.

``images/daemon/Dockerfile`` installs the package with pip on ``python:3.11-slim``, neither of
which is reachable here. The test image is made the way the runner image is
(``tests/docker_engine.py``): the cached Debian root filesystem (debootstrap, bookworm, whose
``python3`` is 3.11 like the Dockerfile's), plus, appended:

- the ``runnerscale`` package of this tree, with a ``dist-info`` made from ``pyproject.toml``
  (its version and entry points: the backends are found through them), and every distribution
  it needs with the ``docker`` and ``postgres`` extras, copied from the test's own environment
  (the same Python minor version, the same glibc) into ``/opt/runnerscale/site``;
- ``/opt/runnerscale/bin/runnerscale``, the console script pip would write;
- the Dockerfile's user (uid/gid 10001) and its state directory (0700, its).

The image's settings are the Dockerfile's own: :func:`runtime_settings` reads ENV, USER,
WORKDIR, VOLUME, EXPOSE, ENTRYPOINT and CMD from its final stage, so the image runs as the
published one would; only ``PYTHONPATH`` is added, where pip would have used a virtual
environment.
"""

from __future__ import annotations

import importlib.metadata
import re
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.docker_engine import (
    PACKAGE,
    ROOT,
    Engine,
    Overlay,
    import_image,
    imported,
    rootfs_tarball,
)

DOCKERFILE = ROOT / "images" / "daemon" / "Dockerfile"
REPOSITORY = "runnerscale-test-daemon"
#: The Dockerfile's user and group id.
DAEMON_UID = 10001
SITE = "opt/runnerscale/site"
EXTRAS = ("docker", "postgres")
#: What the Dockerfile's final stage sets that ``docker import`` can set too.
RUNTIME = ("ENV", "USER", "WORKDIR", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD")

CONSOLE_SCRIPT = """\
#!/usr/bin/python3
import sys
from runnerscale.cli import main
sys.exit(main())
"""


def runtime_settings(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The final stage's runtime instructions, each on one line, in order."""
    instructions: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if stripped.endswith("\\"):
            continue
        instructions.append(pending.strip())
        pending = ""
    last_from = max(i for i, text in enumerate(instructions) if text.upper().startswith("FROM "))
    final = instructions[last_from + 1 :]
    return [text for text in final if text.split(" ", 1)[0].upper() in RUNTIME]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions() -> list[importlib.metadata.Distribution]:
    """Every distribution ``runnerscale[docker,postgres]`` needs, as installed here (not
    runnerscale itself: its code comes from this tree)."""
    found: dict[str, importlib.metadata.Distribution] = {}

    def visit(requirement: Requirement, extras: tuple[str, ...]) -> None:
        marker = requirement.marker
        if marker is not None and not any(
            marker.evaluate({"extra": extra}) for extra in extras or ("",)
        ):
            return
        key = _normalized(requirement.name)
        if key in found:
            return
        found[key] = importlib.metadata.distribution(requirement.name)
        for text in found[key].requires or []:
            visit(Requirement(text), tuple(requirement.extras))

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = list(project["dependencies"])
    for extra in EXTRAS:
        needed += project["optional-dependencies"][extra]
    for text in needed:
        visit(Requirement(text), ())
    return list(found.values())


def _site_files() -> Iterator[tuple[str, bytes | None, int, int]]:
    for distribution in distributions():
        for record in distribution.files or []:
            path = Path(str(distribution.locate_file(record)))
            if ".." in record.parts or "__pycache__" in record.parts or not path.is_file():
                continue
            mode = 0o755 if path.suffix == ".so" else 0o644
            yield f"{SITE}/{record.as_posix()}", path.read_bytes(), mode, 0
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(PACKAGE.parent).as_posix()
            yield f"{SITE}/{relative}", path.read_bytes(), 0o644, 0
    yield from _dist_info()


def _dist_info() -> Iterator[tuple[str, bytes | None, int, int]]:
    """What pip would write for this tree: its name, version and entry points."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    folder = f"{SITE}/runnerscale-{project['version']}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: runnerscale\nVersion: {project['version']}\n"
    groups = {"console_scripts": project["scripts"], **project["entry-points"]}
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in items.items()) + "\n"
        for group, items in groups.items()
    )
    yield f"{folder}/METADATA", metadata.encode(), 0o644, 0
    yield f"{folder}/entry_points.txt", entry_points.encode(), 0o644, 0


def _base_file(name: str) -> str:
    with tarfile.open(rootfs_tarball()) as archive:
        member = archive.extractfile(f"./{name}")
        assert member is not None, f"the root filesystem has no {name}"
        return member.read().decode()


def overlay() -> Overlay:
    """Everything the daemon image adds to the root filesystem."""
    passwd = _base_file("etc/passwd") + (
        f"runnerscale:x:{DAEMON_UID}:{DAEMON_UID}::/var/lib/runnerscale:/usr/sbin/nologin\n"
    )
    group = _base_file("etc/group") + f"runnerscale:x:{DAEMON_UID}:\n"
    files: Overlay = [
        ("etc/passwd", passwd.encode(), 0o644, 0),
        ("etc/group", group.encode(), 0o644, 0),
        ("var/lib/runnerscale", None, 0o700, DAEMON_UID),
        ("opt/runnerscale/bin/runnerscale", CONSOLE_SCRIPT.encode(), 0o755, 0),
    ]
    files += _site_files()
    return files


def import_daemon_image(url: str, scratch: Path) -> str:
    """Import the test daemon image into the engine at ``url``; returns its reference."""
    changes = [*runtime_settings(), f"ENV PYTHONPATH=/{SITE}"]
    return import_image(url, scratch, REPOSITORY, overlay(), changes)


@pytest.fixture(scope="session")
def daemon_image(docker_engine: Engine) -> str:
    """The test daemon image, imported into the session's engine."""
    return imported(docker_engine, import_daemon_image, "daemon image")
