"""The runner's files inside GitHub's JIT config, and what the boot script derives from them.

Why: GitHub's ``encoded_jit_config`` is base64 of a JSON object whose values are the runner's
settings files, each base64 again (``.runner``, ``.credentials``,
``.credentials_rsaparams``). garm's boot script fetches each file apart
(``credentials/runner`` and so on) and writes it as is, so the daemon serves each one decoded.
The service name the script asks for comes from the ``.runner`` file's ``gitHubUrl``; the
systemd unit is the one garm serves. Nothing here logs or raises a file's content.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "FILE_NAMES",
    "RunnerFiles",
    "service_name",
    "split_jitconfig",
    "unit_file",
    "valid_user",
]

#: The files a JIT config holds, as garm's routes name them (``credentials/<name>`` serves
#: ``.<name>``).
FILE_NAMES = ("runner", "credentials", "credentials_rsaparams")

#: A Unix user name a unit file may name (the ``runAsUser`` query): nothing that could break
#: out of its line.
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_NAME_PART = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class RunnerFiles:
    """The files of one JIT config, decoded (secrets: never in a repr), and the GitHub URL
    of the ``.runner`` file ("" when it names none)."""

    files: dict[str, bytes] = field(repr=False)
    github_url: str = ""


def _b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not text")
    return base64.b64decode(text, validate=True)


def split_jitconfig(encoded: str) -> RunnerFiles:
    """The files of GitHub's ``encoded_jit_config``. Raises ValueError (naming no content)
    when it is not that shape: base64 of a JSON object of base64 files."""
    try:
        outer = json.loads(_b64(encoded.strip()))
        if not isinstance(outer, dict):
            raise ValueError("not an object")
        files = {name: _b64(outer[f".{name}"]) for name in FILE_NAMES if f".{name}" in outer}
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(
            "the JIT config is not GitHub's encoded_jit_config (base64 of a JSON object of the "
            "runner's base64 files)"
        ) from None
    return RunnerFiles(files, _github_url(files.get("runner", b"")))


def _github_url(runner_file: bytes) -> str:
    """The ``gitHubUrl`` of a ``.runner`` file (GitHub writes it camel-case, with a BOM at
    times; the key is matched without case), "" when absent."""
    try:
        settings = json.loads(runner_file.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(settings, dict):
        return ""
    for key, value in settings.items():
        if isinstance(key, str) and key.lower() == "githuburl" and isinstance(value, str):
            return value
    return ""


def service_name(github_url: str, fallback: str) -> str:
    """The runner's systemd service name as garm names it (no ``.service``):
    ``actions.runner.<owner>.<repo>`` for a repository, ``actions.runner.<org>`` for an
    organisation, ``actions.runner.<slug>`` for an enterprise; ``actions.runner.<fallback>``
    when the URL names none."""
    parts = [part for part in urlsplit(github_url).path.split("/") if part]
    if parts[:1] == ["enterprises"]:
        parts = parts[1:2]
    parts = [_NAME_PART.sub("-", part) for part in parts[:2]]
    return ".".join(["actions.runner", *(parts or [_NAME_PART.sub("-", fallback)])])


def valid_user(user: str) -> bool:
    """Whether ``user`` may be written into a unit file (a plain Unix user name)."""
    return bool(_USER.match(user))


def unit_file(service: str, user: str) -> str:
    """The runner's systemd unit, as garm serves it to the boot script (``user`` checked by
    :func:`valid_user` first)."""
    home = f"/home/{user}/actions-runner"
    return (
        "[Unit]\n"
        f"Description=GitHub Actions Runner ({service})\n"
        "After=network.target\n"
        "\n"
        "[Service]\n"
        f"ExecStart={home}/runsvc.sh\n"
        f"User={user}\n"
        f"WorkingDirectory={home}\n"
        "KillMode=process\n"
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=5min\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
