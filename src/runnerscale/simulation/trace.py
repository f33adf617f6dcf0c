"""Workload traces: one queued job per line, as ``runnerscale simulate`` replays them.

A trace line is a JSON object (DESIGN.md, "Interfaces")::

    {"at": 43.64, "repo": "acme/app", "labels": ["self-hosted", "linux", "x64"],
     "duration": 473.1, "run_id": 1001, "job": "build"}

``at`` is when the job is queued (seconds from the start of the trace), ``duration`` how long it
runs once a runner has picked it up; ``repo`` and ``labels`` (the job's ``runs-on``) are as
GitHub reports them, ``run_id`` and ``job`` optional. Blank lines and lines starting with ``#``
are skipped, so a trace can carry a comment on where it came from.

Traces are written by hand, by scripts and by ``runnerscale trace export``, so reading one is
strict and its errors are specific: every problem is reported as ``FILE:LINE: what is wrong —
how to fix``, up to :data:`MAX_PROBLEMS` of them at once, so a broken file is fixed in one pass
rather than one error at a time. Unknown keys are errors (a misspelt ``duraton`` would otherwise
be silently ignored while ``duration`` is reported missing — or worse, defaulted).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Stop collecting problems after this many: the file is probably not a trace at all.
MAX_PROBLEMS = 20

#: The keys of a trace line, in the order :func:`write_trace` writes them.
KEYS: tuple[str, ...] = ("at", "repo", "labels", "duration", "run_id", "job")
REQUIRED: frozenset[str] = frozenset({"at", "repo", "labels", "duration"})

#: GitHub's rules for owner and repository names (loosely: what can appear in a URL path).
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")

EXAMPLE = (
    '{"at": 12.5, "repo": "acme/app", "labels": ["self-hosted", "linux", "x64"], '
    '"duration": 240, "run_id": 1001, "job": "build"}'
)

_HINTS: dict[str, str] = {
    "at": 'write the seconds from the trace start at which the job is queued, e.g. "at": 12.5',
    "repo": 'write the repository as "owner/name", e.g. "repo": "acme/app"',
    "labels": 'list the job\'s runs-on labels, e.g. "labels": ["self-hosted", "linux", "x64"]',
    "duration": 'write the seconds the job runs once picked up, e.g. "duration": 240',
    "run_id": 'write the workflow run id as a whole number of at least 1, e.g. "run_id": 1001, '
    "or leave it out",
    "job": 'write the job\'s name as a string, e.g. "job": "build", or leave it out',
}


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace. ``line`` (where it was read, 0 when made in code) is only for
    messages: two jobs that differ only in their line are equal."""

    at: float
    repo: str
    labels: tuple[str, ...]
    duration: float
    run_id: int | None = None
    job: str | None = None
    line: int = field(default=0, compare=False)

    def as_json(self) -> dict[str, Any]:
        """The trace line, keys in the documented order; ``at`` and ``duration`` to 1/100 s."""
        body: dict[str, Any] = {
            "at": round(float(self.at), 2),
            "repo": self.repo,
            "labels": list(self.labels),
            "duration": round(float(self.duration), 2),
        }
        if self.run_id is not None:
            body["run_id"] = self.run_id
        if self.job is not None:
            body["job"] = self.job
        return body


class TraceError(ValueError):
    """A trace that cannot be replayed. ``problems`` holds one ``FILE:LINE: what — fix``
    message per problem; ``str(error)`` is all of them, one per line."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def read_trace(path: Path) -> list[TraceJob]:
    """Read and check a trace file; its jobs sorted by ``at`` (ties keep file order)."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TraceError(
            [f"{source}: no such file — check the path of the trace (--trace)"]
        ) from None
    except IsADirectoryError:
        raise TraceError([f"{source}: is a directory — give the path of a .jsonl file"]) from None
    except OSError as error:
        raise TraceError(
            [f"{source}: cannot be read ({error.strerror}) — check its permissions"]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise TraceError(
            [f"{source}:{line}: is not UTF-8 text — save the trace as UTF-8 JSON lines"]
        ) from None
    return parse_trace(text, source)


def parse_trace(text: str, source: str = "<trace>") -> list[TraceJob]:
    """Check and parse the text of a trace; ``source`` names it in messages."""
    problems: list[str] = []
    jobs: list[TraceJob] = []
    # Split on "\n" only: str.splitlines() would also split inside a JSON string holding
    # U+2028 or a form feed, and miscount lines.
    for number, raw_line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        job, found = _parse_line(line, number)
        problems.extend(f"{source}:{number}: {problem}" for problem in found)
        if len(problems) >= MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS]
            problems.append(
                f"{source}: stopped after {MAX_PROBLEMS} problems — fix these and read it again"
            )
            break
        if job is not None:
            jobs.append(job)
    if problems:
        raise TraceError(problems)
    if not jobs:
        raise TraceError(
            [f"{source}: the trace has no jobs — write one JSON object per line, e.g. {EXAMPLE}"]
        )
    return sorted(jobs, key=lambda job: job.at)


def write_trace(jobs: Iterable[TraceJob], path: Path) -> None:
    """Write jobs as a trace, one JSON object per line, in the order given."""
    lines = [json.dumps(job.as_json()) + "\n" for job in jobs]
    path.write_text("".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------- checking one line


def _parse_line(line: str, number: int) -> tuple[TraceJob | None, list[str]]:
    try:
        data = json.loads(line, parse_constant=_reject_constant)
    except ValueError as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        where = f" at column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        return None, [
            f"is not valid JSON ({reason}{where}) — write one JSON object per line, e.g. {EXAMPLE}"
        ]
    if not isinstance(data, dict):
        return None, [
            f"is {_describe(data)}, not a JSON object — write one object per line, e.g. {EXAMPLE}"
        ]
    problems: list[str] = []
    for key in data:
        if key not in KEYS:
            problems.append(f"unknown key {key!r} — {_unknown_key_hint(key)}")
    for key in KEYS:
        if key in REQUIRED and key not in data:
            problems.append(f"{key!r} is missing — {_HINTS[key]}")

    at = _number(data, "at", problems)
    duration = _number(data, "duration", problems)
    repo = _repo(data, problems)
    labels = _labels(data, problems)
    run_id = _run_id(data, problems)
    job = _job_name(data, problems)
    if problems or at is None or duration is None or repo is None or labels is None:
        return None, problems
    return TraceJob(
        at=at, repo=repo, labels=labels, duration=duration, run_id=run_id, job=job, line=number
    ), []


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _number(data: dict[str, Any], key: str, problems: list[str]) -> float | None:
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{key!r} is {_describe(value)}, not a number — {_HINTS[key]}")
        return None
    if not math.isfinite(value):
        problems.append(f"{key!r} is not a finite number — {_HINTS[key]}")
        return None
    if value < 0:
        problems.append(f"{key!r} is {value}, which is negative — {_HINTS[key]} (at least 0)")
        return None
    return float(value)


def _repo(data: dict[str, Any], problems: list[str]) -> str | None:
    if "repo" not in data:
        return None
    value = data["repo"]
    if not isinstance(value, str):
        problems.append(f"'repo' is {_describe(value)}, not a string — {_HINTS['repo']}")
        return None
    if not _REPO.match(value):
        problems.append(f"'repo' is {value!r}, not \"owner/name\" — {_HINTS['repo']}")
        return None
    return value


def _labels(data: dict[str, Any], problems: list[str]) -> tuple[str, ...] | None:
    if "labels" not in data:
        return None
    value = data["labels"]
    if not isinstance(value, list):
        problems.append(f"'labels' is {_describe(value)}, not a list — {_HINTS['labels']}")
        return None
    if not value:
        problems.append(f"'labels' is empty — {_HINTS['labels']}")
        return None
    for index, label in enumerate(value):
        if not isinstance(label, str):
            problems.append(
                f"'labels'[{index}] is {_describe(label)}, not a string — {_HINTS['labels']}"
            )
            return None
        if not label.strip():
            problems.append(f"'labels'[{index}] is an empty string — remove it or name the label")
            return None
    return tuple(value)


def _run_id(data: dict[str, Any], problems: list[str]) -> int | None:
    value = data.get("run_id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and value >= 1:
            return int(value)
        problems.append(f"'run_id' is {_describe(value)}, not a whole number — {_HINTS['run_id']}")
        return None
    if value < 1:
        problems.append(f"'run_id' is {value}, less than 1 — {_HINTS['run_id']}")
        return None
    return value


def _job_name(data: dict[str, Any], problems: list[str]) -> str | None:
    value = data.get("job")
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"'job' is {_describe(value)}, not a string — {_HINTS['job']}")
        return None
    return value


def _unknown_key_hint(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
    known = ", ".join(KEYS)
    if close:
        return f"did you mean {close[0]!r}? (a trace line has {known})"
    return f"remove it (a trace line has {known})"


def _describe(value: Any) -> str:
    """A short description of a JSON value for messages: ``"12" (a string)``."""
    kinds = {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    kind = kinds.get(type(value), type(value).__name__)
    if isinstance(value, (list, dict)):
        return f"{kind}"
    shown = json.dumps(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return shown if value is None else f"{shown} ({kind})"
