"""The control API's bearer token, made once and kept in a file only its owner can read.

Why: a TCP control listener (and ``/metrics`` or health set to ``token``) lets in whoever
holds the token, so it must be unguessable (32 random bytes) and readable only by the
daemon's user, who runs ``runnerscale status`` and ``scale`` (or root). The file is written
under a temporary name made with ``O_EXCL`` and mode 0600 and then linked into place, so it
never exists readable by others or half written, and two daemons starting at once keep one
token (the second's link fails and it reads the first's). A token file that others could
read is refused rather than used: its token may be known. The token itself is never part of
an error.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from runnerscale.files import make_dirs

__all__ = ["TokenFileError", "ensure_token", "read_token"]


class TokenFileError(Exception):
    """The token file cannot be used; the message says why and what to do."""


def _others_may_read(mode: int) -> bool:
    return bool(stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO))


def read_token(path: Path, *, owned: bool = False) -> str:
    """The token kept in ``path``, or :class:`TokenFileError` (missing, not ours to read,
    readable by others, empty; not this user's own, with ``owned``: the daemon's token must
    be known to its user alone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise TokenFileError(
            f"there is no API token in {path}: the daemon makes it at its first start with a "
            "tcp:// control listener (or set server.api_token)"
        ) from None
    except PermissionError:
        raise TokenFileError(
            f"permission denied reading the API token {path}: run as the daemon's user or root"
        ) from None
    except OSError as error:
        raise TokenFileError(f"cannot read the API token {path}: {error.strerror}") from None
    with os.fdopen(fd) as file:
        info = os.fstat(file.fileno())
        mode, owner = info.st_mode, info.st_uid
        if not stat.S_ISREG(mode):
            raise TokenFileError(f"the API token {path} is not a file")
        if owned and owner != os.geteuid():
            raise TokenFileError(
                f"the API token {path} belongs to another user (uid {owner}), who knows it: "
                "delete it (the daemon makes a new one) or set server.api_token"
            )
        if _others_may_read(mode):
            raise TokenFileError(
                f"the API token {path} is open to other users (mode {stat.S_IMODE(mode):04o}), "
                "so it may be known: delete it (the daemon makes a new one when it starts) or "
                "set server.api_token"
            )
        token = file.read().strip()
    if not token:
        raise TokenFileError(
            f"the API token {path} is empty: delete it, the daemon makes a new one"
        )
    return token


def ensure_token(path: Path) -> str:
    """The token in ``path``, made there (mode 0600, folders 0700) when there is none yet."""
    if not path.exists():
        make_dirs(path.parent)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32) + "\n")
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another daemon made one first
                os.link(draft, path)
        finally:
            draft.unlink()
    return read_token(path, owned=True)
