"""Durations and sizes, written as people write them, and the field types that check them.

Why: a file says ``15s``, ``2m``, ``1h30m``, ``500ms`` or ``4g``; the models keep float seconds
and int bytes. The field types (``Duration``, ``PositiveDuration``, ``PollInterval``,
``ByteSize``) convert on the way in and answer a bad value with the accepted forms; their JSON
Schema still says "string or number" so editors accept both forms.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, TypeAlias

from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema

from runnerscale.config.problems import fail

_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_FORMS = "30s, 2m, 1h30m, 500ms or a number of seconds"
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            # A duration, or a ${VAR} reference that becomes one.
            "pattern": r"^(?:\s*(?:\d+(?:\.\d+)?(?:ms|h|m|s)?)+\s*|.*\$\{.*)$",
        },
        {"type": "number", "minimum": 0},
    ],
    "description": f"A duration: {DURATION_FORMS}.",
}


def parse_duration(value: str | float) -> float:
    """Seconds from ``"15s"``, ``"2m"``, ``"1h30m"``, ``"500ms"``, ``"1.5"`` or a number.

    Raises ``ValueError`` (with the accepted forms in its message) for anything else,
    including negative and non-finite values."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"not a duration; write {DURATION_FORMS}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative; write {DURATION_FORMS}")
        if _NUMBER_RE.match(text):
            seconds = float(text)
        elif _DURATION_RE.match(text):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit]
                for number, unit in _DURATION_PART_RE.findall(text)
            )
        else:
            raise ValueError(f"not a duration; write {DURATION_FORMS}")
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite; write {DURATION_FORMS}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative; write {DURATION_FORMS}")
    return seconds


def _format_seconds(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _duration_checker(minimum: float, *, exclusive: bool) -> Any:
    def check(value: Any, info: ValidationInfo) -> float:
        name = info.field_name or "it"
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            negative = "negative" in str(error)
            raise fail(
                "must not be negative" if negative else "is not a duration",
                f"write {name} as {DURATION_FORMS}",
            ) from None
        if exclusive and seconds <= minimum:
            raise fail(
                f"must be longer than {_format_seconds(minimum)}",
                f"set {name} to a positive duration, such as 2m",
            )
        if not exclusive and seconds < minimum:
            raise fail(
                f"must be at least {_format_seconds(minimum)}",
                f"set {name} to {_format_seconds(minimum)} or more",
            )
        return seconds

    return check


#: A duration of zero or more, in seconds.
Duration: TypeAlias = Annotated[
    float,
    BeforeValidator(_duration_checker(0.0, exclusive=False)),
    WithJsonSchema(_DURATION_SCHEMA),
]
#: A duration of more than zero, in seconds.
PositiveDuration: TypeAlias = Annotated[
    float,
    BeforeValidator(_duration_checker(0.0, exclusive=True)),
    WithJsonSchema(_DURATION_SCHEMA),
]
#: The poll interval: one second or more (GitHub's rate limit would not last long below).
PollInterval: TypeAlias = Annotated[
    float,
    BeforeValidator(_duration_checker(1.0, exclusive=False)),
    WithJsonSchema(_DURATION_SCHEMA),
]


# --------------------------------------------------------------------------------------------
# Sizes

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE_FORMS = "512m, 4g, 1.5g or a number of bytes"


def parse_size(value: str | int) -> int:
    """Bytes from ``"512m"``, ``"4g"``, ``"1.5G"``, ``"4GiB"`` or a number (binary units, as
    Docker reads them). Raises ``ValueError`` for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a size; write {SIZE_FORMS}")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _SIZE_RE.match(str(value).strip())
        if match is None:
            raise ValueError(f"not a size; write {SIZE_FORMS}")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"a size must be more than zero; write {SIZE_FORMS}")
    return size


def _size_checker(minimum: int) -> Any:
    def check(value: Any, info: ValidationInfo) -> int:
        name = info.field_name or "it"
        if not isinstance(value, (str, int)):
            raise fail("is not a size", f"write {name} as {SIZE_FORMS}")
        try:
            size = parse_size(value)
        except ValueError:
            raise fail("is not a size", f"write {name} as {SIZE_FORMS}") from None
        if size < minimum:
            raise fail(
                f"is less than {minimum // 1024**2}m",
                f"give {name} at least {minimum // 1024**2}m",
            )
        return size

    return check


#: A size in bytes, written as 512m, 4g or a number of bytes.
ByteSize: TypeAlias = Annotated[
    int,
    BeforeValidator(_size_checker(4 * 1024**2)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[kKmMgGtT]?i?[bB]?\s*$"},
                {"type": "integer", "minimum": 1},
            ],
            "description": f"A size: {SIZE_FORMS}.",
        }
    ),
]
