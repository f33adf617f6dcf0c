"""The field types of a ``workflow_job`` delivery: what GitHub can send, and nothing else.

A validly signed delivery is still input. Whatever GitHub never sends is refused here, at the
edge (the HTTP server answers 400 with the reason), because past the edge it fails where
nobody hears of it: a year-1 date raised in ``timestamp()`` (a 500 with a traceback), and a
job id of 2**63 was answered 202 and then lost to an ``OverflowError`` in the events loop.
The limits, and where they come from:

* **Ids** (jobs, runs, repositories, accounts, installations): JSON integers, strictly (no
  ``"12"``, no ``12.0``, no ``true``), from 1 to 2**63 - 1. GitHub's REST description types
  them ``integer``, ``format: int64``; the store keeps them in ``BIGINT`` columns. A job's
  runner and runner group ids may also be 0 (or null) before a runner has it.
* **Dates**: ISO 8601 with a time zone (GitHub always writes ``Z`` or an offset), not before
  2008-01-01 (GitHub launched in 2008) and, when the receiver's clock is known, not more than
  a day past it. A year-1 or naive date is no date GitHub means; a date far ahead would make
  its repository look freshly heard of to the poll's schedule (``Controller.newest_jobs``)
  for that long. A day covers any skew between a host's clock and GitHub's.
* **Labels**: at most :data:`MAX_LABELS` (103) per job. A job runs only on a runner that
  carries all its labels, and a runner carries at most 100 custom labels (the ``maxItems``
  of GitHub's runner-label and JIT-configuration APIs) plus its 3 defaults (``self-hosted``,
  its OS, its architecture): a job with more could never run, so GitHub has no reason to
  announce one. GitHub documents no length for a label; each is capped like a name.
* **Names** (labels, logins, repository names, runner and runner-group names): at most
  :data:`MAX_NAME` (255) characters. GitHub's own limits are lower (logins 39, repository
  names 100); 255 is what the store's ``VARCHAR`` columns hold, with room for GitHub
  Enterprise's longer logins.
* **Text** (job and workflow names, branch, URL): at most :data:`MAX_TEXT` (1,024)
  characters; GitHub documents no limit, none of it comes near.
* **Conclusion**: one of GitHub's snake-case words (``success``, ``timed_out``, ...), at most
  32 characters (the store's column): kept open, since GitHub's list grows.
* **No control characters** in any string: C0 and C1 controls (NUL, newline, escape, ...),
  DEL, the Unicode line and paragraph separators, and unpaired surrogates. GitHub's names and
  labels never hold them; in a log line they forge lines or corrupt the file, and PostgreSQL
  refuses a NUL outright.
* **Delivery GUID** (``X-GitHub-Delivery``): 1 to 255 printable ASCII characters (GitHub
  sends a 36-character GUID; the store keeps it in a 255-character column).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "EARLIEST",
    "MAX_AHEAD",
    "MAX_ID",
    "MAX_LABELS",
    "MAX_NAME",
    "MAX_TEXT",
    "Conclusion",
    "Id",
    "Label",
    "Labels",
    "Name",
    "RunnerRef",
    "Text",
    "When",
    "delivery_problem",
]

MAX_ID: Final = 2**63 - 1
EARLIEST: Final = datetime(2008, 1, 1, tzinfo=UTC)
#: How far past the receiver's clock a date may be (clock skew).
MAX_AHEAD: Final = timedelta(days=1)
#: 100 custom labels (GitHub's ``maxItems``) plus the 3 default ones.
MAX_LABELS: Final = 103
MAX_NAME: Final = 255
MAX_TEXT: Final = 1024
_MAX_DELIVERY = 255

#: C0 and C1 controls, DEL, line and paragraph separators, and (unpaired) surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_DELIVERY = re.compile(f"[\x21-\x7e]{{1,{_MAX_DELIVERY}}}")


def _no_control(value: str) -> str:
    found = _CONTROL.search(value)
    if found is not None:
        raise PydanticCustomError(
            "control_character",
            "contains the control character {code}",
            {"code": f"U+{ord(found.group()):04X}"},
        )
    return value


def _in_window(value: datetime, info: ValidationInfo) -> datetime:
    if value < EARLIEST:
        raise PydanticCustomError("date_too_early", "is before 2008, earlier than GitHub")
    now = info.context.get("now") if isinstance(info.context, dict) else None
    if now is not None and value > datetime.fromtimestamp(now, UTC) + MAX_AHEAD:
        raise PydanticCustomError(
            "date_in_future", "is more than a day ahead of this host's clock (is it right?)"
        )
    return value


def _bounded(max_length: int, pattern: str | None = None) -> StringConstraints:
    return StringConstraints(strict=True, max_length=max_length, pattern=pattern)


Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
#: A runner's or runner group's id: 0 too (GitHub's placeholder before a runner has the job).
RunnerRef = Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]
Name = Annotated[str, _bounded(MAX_NAME), AfterValidator(_no_control)]
Label = Name
Labels = Annotated[list[Label], Field(max_length=MAX_LABELS)]
Text = Annotated[str, _bounded(MAX_TEXT), AfterValidator(_no_control)]
Conclusion = Annotated[str, _bounded(32, r"^[a-z][a-z_]*$")]
#: Validated against ``now`` (epoch seconds) in the validation context, when there is one.
When = Annotated[AwareDatetime, AfterValidator(_in_window)]


def delivery_problem(guid: str) -> str | None:
    """Why an ``X-GitHub-Delivery`` value cannot be GitHub's, or None when it can be."""
    if _DELIVERY.fullmatch(guid) is None:
        return f"X-GitHub-Delivery must be 1 to {_MAX_DELIVERY} printable ASCII characters"
    return None
