"""Private files and folders (``runnerscale.files``), made with their exact modes whatever the
umask, on a real filesystem."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerscale.files import make_dirs, private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems give processes (022), under which files used to be made 0644
    and folders 0755."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def test_make_dirs_gives_every_folder_it_makes_exactly_its_mode(
    tmp_path: Path, usual_umask: None
) -> None:
    tmp_path.chmod(0o755)
    make_dirs(tmp_path / "a" / "b" / "c")
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode(folder) == 0o700, folder
    assert mode(tmp_path) == 0o755  # it existed: not ours to change
    os.umask(0o077)  # a strict umask does not take away what a runner's user needs
    make_dirs(tmp_path / "x" / "y", 0o711)
    assert (mode(tmp_path / "x"), mode(tmp_path / "x" / "y")) == (0o711, 0o711)
    make_dirs(tmp_path / "x" / "y")  # all there: nothing changes
    assert mode(tmp_path / "x" / "y") == 0o711


def test_private_file_is_made_0600_and_a_laxer_one_narrowed(
    tmp_path: Path, usual_umask: None
) -> None:
    made = tmp_path / "made"
    private_file(made)
    assert made.read_bytes() == b""
    assert mode(made) == 0o600
    lax = tmp_path / "lax"
    lax.write_text("kept")
    lax.chmod(0o664)
    private_file(lax)
    assert lax.read_text() == "kept"  # never truncated
    assert mode(lax) == 0o600
    private_file(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
