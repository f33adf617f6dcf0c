"""Logging set-up, with a last line of defence against leaking secrets.

Nothing in runnerscale logs a token, a webhook secret or a JIT configuration on purpose. The
:class:`RedactSecrets` filter makes sure of it anyway: every record is rendered and any known
secret value (and anything that looks like an encoded JIT configuration) is replaced before a
handler sees it, including in arguments and exception text.

Strings from outside (a job's labels and repository, a delivery's GUID) go into log lines
through :func:`untrusted`, which escapes what is not printable and caps the length: a label
holding a NUL or a newline cannot corrupt the log or forge a line, and a job with thousands of
labels cannot write a line of hundreds of kilobytes. The filter escapes any control character
left in a record too (newlines and tabs aside: tracebacks and multi-line messages need them).
Every library logs through the same handler: :class:`~runnerscale.httpserve.LoopbackServer`
keeps uvicorn from installing handlers of its own, so its tracebacks are redacted as well.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

#: GitHub's encoded JIT configurations are long base64 strings.
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")
REDACTED = "***"
#: What :func:`untrusted` keeps of a string, by default (in characters, escapes included).
UNTRUSTED_LIMIT = 200
#: Control characters a record may not carry raw (all but tab and newline).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(char: str) -> str:
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def untrusted(text: str, limit: int = UNTRUSTED_LIMIT) -> str:
    """``text`` from outside, fit for one log line: every character that is not printable
    escaped (``\\x00``, ``\\n``, ``\\u202e``), and no more than ``limit`` characters,
    the rest counted (``... (9800 more characters)``)."""
    kept: list[str] = []
    size = 0
    for index, char in enumerate(text):
        piece = char if char.isprintable() else _escape(char)
        size += len(piece)
        if size > limit:
            return "".join(kept) + f"... ({len(text) - index} more characters)"
        kept.append(piece)
    return "".join(kept)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` without the known secrets, encoded JIT configurations and raw control
        characters (escaped)."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _LONG_BASE64.sub(REDACTED, text)
        return _CONTROL.sub(lambda found: _escape(found.group()), text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def redacting_handler(
    stream: TextIO, secrets: Iterable[str] = ()
) -> tuple[logging.Handler, RedactSecrets]:
    """The daemon's log handler: one line a record, with a timestamp, through the filter."""
    redactor = RedactSecrets(secrets)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(redactor)
    return handler, redactor


def setup_logging(level: str = "info", secrets: Iterable[str] = ()) -> RedactSecrets:
    """Log to stderr with timestamps; returns the redaction filter (to add secrets later)."""
    handler, redactor = redacting_handler(sys.stderr, secrets)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # A handler that fails (its stream closed, a full disk) must not fall back to printing the
    # record to stderr, unredacted, as logging does by default ("--- Logging error ---").
    logging.raiseExceptions = False
    # asyncssh logs each connection's steps and each command's whole text at info: with a
    # health check per node every few seconds, that would be most of the log (the SSH
    # backend logs what matters: a node connected, down, back). botocore (and boto3, and the
    # urllib3 under it) logs every AWS request and answer whole at debug, the ec2 backend's
    # listing every poll interval among them: at --log-level debug they would bury the
    # daemon's own lines (the backend logs every launch attempt and clean-up itself).
    for noisy in (
        "httpx",
        "httpcore",
        "uvicorn.access",
        "alembic",
        "asyncssh",
        "botocore",
        "boto3",
        "urllib3",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
