"""What is wrong with a configuration file, said so that a person can fix it.

Why it is apart: every other part of ``config/`` reports through these few names, and they
depend on nothing else in it. A validator raises ``fail(message, hint)``, a pydantic error of
its own type (``ERROR_TYPE``) that carries the fix; ``explain`` turns it, and pydantic's own
errors, into ``Problem``s with the file and the line; ``ConfigError`` carries every one of
them. Nothing secret is echoed: the values of ``SECRET_KEYS`` are never shown, and ``redact``
takes every secret the source saw out of the final messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

DOCS = "docs/configuration.md"
#: Keys whose values are never shown in a message.
SECRET_KEYS = frozenset({"token", "webhook_secret", "private_key", "api_token"})
#: The pydantic error type raised by ``fail``: an error that carries its own hint.
ERROR_TYPE = "runnerscale"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, and what to change."""

    file: str
    line: int | None
    path: str  # "pools[0].max_runners"; "" for the document as a whole
    message: str
    hint: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {what} — {self.hint}" if self.hint else f"{where}: {what}"


class ConfigError(Exception):
    """A configuration file cannot be used. ``problems`` lists every issue found, by line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def fail(message: str, hint: str, *, at: tuple[str | int, ...] = (), echo: bool = True) -> Any:
    """A validation error that carries its own hint (and optionally a sub-path, ``at``).

    ``echo`` says whether the renderer may append the offending input ("got ...")."""
    return PydanticCustomError(
        ERROR_TYPE, "{message}", {"message": message, "hint": hint, "at": at, "echo": echo}
    )


def render_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def redact(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)
    if not ordered:
        return problems

    def clean(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "<redacted>")
        return text

    return [Problem(p.file, p.line, p.path, clean(p.message), clean(p.hint)) for p in problems]


def sort_problems(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line if p.line is not None else 0, p.path))
