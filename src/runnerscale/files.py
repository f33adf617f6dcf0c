"""Files and folders for runnerscale's user only: the state database, runner folders.

Why: the state database knows every runner and job, and a runner's folder holds its record and
its log; other local users have no business reading them (the finding of issue 12: the
database was made 0644, runner folders 0755). ``mkdir(mode=...)`` and ``os.open(..., mode)``
are filtered through the umask, and ``mkdir -p`` gives parents the default mode, so every
folder made here, parents included, gets exactly its mode; a file is made, or narrowed, to
its owner's bits. A folder that already existed is left as it is: it may be shared (``/tmp``,
``/var/lib``), and is not ours to change. Apart from the store and the backends because both
need it, and those layers do not import each other.

A unix socket's path (the daemon's control socket, under the state directory) may be longer
than the 107 bytes its address can hold; :func:`socket_address` reaches it through its opened
folder instead, for the daemon that binds it and the command line that connects alike.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MAX_SOCKET_ADDRESS", "make_dirs", "private_file", "socket_address", "write_atomic"]

#: The longest path a unix socket's address holds (``sun_path``: 108 bytes with its NUL).
MAX_SOCKET_ADDRESS = 107

#: Bits of a mode that let others than the owner in.
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def make_dirs(path: Path, mode: int = 0o700) -> None:
    """``path`` and its missing parents, each made with exactly ``mode`` (a runner's user that
    must pass through needs ``0o711``); folders that exist are not touched."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is its own
        os.chmod(folder, mode)  # what the umask took away


def private_file(path: Path, *, create: bool = True) -> None:
    """``path`` readable and writable by its owner only: made empty with mode ``0o600`` when
    it is missing (``create``), else narrowed to its owner's bits when runnerscale's user owns
    it. A missing file is left missing with ``create=False``."""
    flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        if create:
            raise
        return
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & _OTHERS:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~_OTHERS)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` whole or not at all (a reader, or a crash, never sees half a file),
    with exactly ``mode`` from the start: the content is written to a temporary file beside
    it, made with ``mode`` whatever the umask, and renamed over it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for the unix socket at ``path`` (to bind or to connect to): the path
    itself when it fits, else, while the context lasts, ``/proc/self/fd/N/NAME`` through its
    folder, opened (Linux resolves it like the path)."""
    if len(os.fsencode(path)) <= MAX_SOCKET_ADDRESS:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)
