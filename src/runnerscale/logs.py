"""Logging set-up, with a last line of defence against leaking secrets.

Nothing in runnerscale logs a token, a webhook secret or a JIT configuration on purpose. The
:class:`RedactSecrets` filter makes sure of it anyway: every record is rendered and any known
secret value (and anything that looks like an encoded JIT configuration) is replaced before a
handler sees it, including in arguments and exception text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

#: GitHub's encoded JIT configurations are long base64 strings.
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")
REDACTED = "***"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _LONG_BASE64.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def setup_logging(level: str = "info", secrets: Iterable[str] = ()) -> RedactSecrets:
    """Log to stderr with timestamps; returns the redaction filter (to add secrets later)."""
    redactor = RedactSecrets(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
