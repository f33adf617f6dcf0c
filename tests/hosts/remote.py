"""Folders and files of a test on the loopback node, owned by the user the node logs in."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.sshd import TEST_USER


@contextmanager
def user_folder(user: str = TEST_USER) -> Iterator[Path]:
    """A fresh folder in ``user``'s home, owned by them; removed afterwards."""
    entry = pwd.getpwnam(user)
    folder = Path(entry.pw_dir) / f"rs-hosts-{secrets.token_hex(4)}"
    folder.mkdir()
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def owned_file(path: Path, text: str, mode: int = 0o644, user: str = TEST_USER) -> Path:
    entry = pwd.getpwnam(user)
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path
