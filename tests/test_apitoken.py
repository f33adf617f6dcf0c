"""The control API's token file (issue 12): made once with mode 0600 and kept, never
readable by others at any moment, and refused when others could have read it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from runnerscale.apitoken import TokenFileError, ensure_token, read_token

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_made_once_0600_in_a_0700_folder_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "api-token"
    before = os.umask(0)
    try:
        token = ensure_token(path)
    finally:
        os.umask(before)
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert ensure_token(path) == token == read_token(path)
    assert [p.name for p in path.parent.iterdir()] == ["api-token"]  # no draft left


def test_two_daemons_starting_at_once_keep_one_token(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(ensure_token(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1


def test_a_token_others_could_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    token = ensure_token(path)
    path.chmod(0o640)
    with pytest.raises(TokenFileError, match="open to other users") as caught:
        ensure_token(path)
    assert token not in str(caught.value)
    with pytest.raises(TokenFileError, match="open to other users"):
        read_token(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to nobody")
def test_a_token_of_another_user_is_not_the_daemons(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    ensure_token(path)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(TokenFileError, match="another user"):
        ensure_token(path)
    assert read_token(path)  # root's command line may read the daemon user's token


def test_missing_and_empty_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="makes it at its first start"):
        read_token(tmp_path / "api-token")
    empty = tmp_path / "empty"
    empty.touch(mode=0o600)
    with pytest.raises(TokenFileError, match="is empty"):
        read_token(empty)
