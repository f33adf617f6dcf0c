"""The daemon's log: secrets redacted, and strings from outside escaped and capped."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from runnerscale.logs import REDACTED, UNTRUSTED_LIMIT, setup_logging, untrusted
from tests.logcapture import daemon_log

SECRET = "webhook-secret-value"
log = logging.getLogger("runnerscale.test")


@pytest.fixture(autouse=True)
def logger_levels() -> Iterator[None]:
    """The level of every logger as it was before the test (``setup_logging`` quiets the
    libraries' loggers: left so, a later test would miss their records)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    levels = {logger: logger.level for logger in loggers if isinstance(logger, logging.Logger)}
    yield
    for logger, level in levels.items():
        logger.setLevel(level)


def test_untrusted_escapes_what_is_not_printable() -> None:
    assert untrusted("gpu\x00evil") == "gpu\\x00evil"
    assert untrusted("linux\n2026-01-01 ERROR forged") == "linux\\n2026-01-01 ERROR forged"
    assert untrusted("\x1b[31mred\u202e") == "\\x1b[31mred\\u202e"
    assert untrusted("lone \ud800") == "lone \\ud800"
    # Printable text, spaces and non-ASCII letters stay as they are.
    assert untrusted("GPU 🚀 ünïcödé, self-hosted") == "GPU 🚀 ünïcödé, self-hosted"


def test_untrusted_caps_the_length_and_says_how_much_is_left() -> None:
    labels = ", ".join(f"l{i}" for i in range(10_000))
    shown = untrusted(labels)
    assert shown.startswith("l0, l1, l2")
    assert len(shown) < UNTRUSTED_LIMIT + 40
    assert shown.endswith(f"({len(labels) - UNTRUSTED_LIMIT} more characters)")
    # Escapes count towards the limit: a string of NULs cannot grow past it either.
    assert untrusted("\x00" * 1000, limit=8) == "\\x00\\x00... (998 more characters)"
    assert untrusted("x" * UNTRUSTED_LIMIT) == "x" * UNTRUSTED_LIMIT


def test_the_handler_redacts_secrets_in_messages_and_tracebacks() -> None:
    with daemon_log([SECRET]) as output:
        log.warning("connecting with %s", SECRET)
        try:
            raise RuntimeError(f"refused {SECRET}")
        except RuntimeError:
            log.exception("it failed")
    text = output.getvalue()
    assert SECRET not in text
    assert f"connecting with {REDACTED}" in text
    assert f"RuntimeError: refused {REDACTED}" in text


def test_the_handler_escapes_raw_control_characters_but_keeps_lines() -> None:
    with daemon_log() as output:
        log.warning("label %s", "gpu\x00\x1b[2J")
        log.warning("two lines:\n\tsecond")
    text = output.getvalue()
    assert "\x00" not in text
    assert "\x1b" not in text
    assert "label gpu\\x00\\x1b[2J" in text
    assert "two lines:\n\tsecond" in text


def test_the_ssh_library_s_chatter_stays_out_of_the_daemon_s_log() -> None:
    """At the daemon's default level, asyncssh's info lines (every connection step, every
    command's whole script, a health check per node every few seconds) are left out."""
    chatty = logging.getLogger("asyncssh")
    setup_logging("info")
    assert not chatty.isEnabledFor(logging.INFO)
    assert chatty.isEnabledFor(logging.WARNING)


def test_the_aws_library_s_request_dumps_stay_out_of_the_daemon_s_debug_log() -> None:
    """At --log-level debug, botocore's whole requests and answers (every listing of the ec2
    backend, every poll interval) are left out; its warnings are not."""
    setup_logging("debug")
    for name in ("botocore", "boto3", "urllib3"):
        assert not logging.getLogger(f"{name}.endpoint").isEnabledFor(logging.DEBUG)
        assert logging.getLogger(name).isEnabledFor(logging.WARNING)
