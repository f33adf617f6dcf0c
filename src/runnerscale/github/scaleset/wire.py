"""The Actions service's JSON, to and from runnerscale's scale-set types.

The shapes are those of GitHub's Go client (``actions/scaleset``, ``types.go``): camelCase
keys, a scale set's labels as ``{type, name}`` objects, and a message envelope whose ``body``
is a JSON *string* holding an array of job messages. Parsing is lenient where the service has
drifted before (``jobId`` was added later, as a string; absent fields take their zero) and
strict where a wrong answer would mislead the daemon (an envelope of another type, a body that
is not an array): those raise :class:`WireError`, which names what was wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runnerscale.protocols import GitHubError, JitConfig
from runnerscale.scaleset_api import (
    ScaleSet,
    ScaleSetEvent,
    ScaleSetEventKind,
    ScaleSetMessage,
    ScaleSetStatistics,
)

log = logging.getLogger("runnerscale.github.scaleset")

#: The only envelope type the listener understands (``parseRunnerScaleSetMessageResponse``).
JOB_MESSAGES = "RunnerScaleSetJobMessages"
#: A label's type when the service or the spec gives none.
SYSTEM_LABEL = "System"
_EVENT_KINDS = {kind.value: kind for kind in ScaleSetEventKind}
_STATISTICS_KEYS = {
    "available_jobs": "totalAvailableJobs",
    "acquired_jobs": "totalAcquiredJobs",
    "assigned_jobs": "totalAssignedJobs",
    "running_jobs": "totalRunningJobs",
    "registered_runners": "totalRegisteredRunners",
    "busy_runners": "totalBusyRunners",
    "idle_runners": "totalIdleRunners",
}


class WireError(GitHubError):
    """The Actions service answered something that is not the protocol runnerscale speaks."""


@dataclass(frozen=True)
class AdminConnection:
    """Where the Actions service of a scope is (the tenant URL) and the admin token for it."""

    tenant_url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class SessionInfo:
    """A message session as the service created or refreshed it."""

    session_id: str
    queue_url: str
    queue_token: str = field(repr=False)
    statistics: ScaleSetStatistics


@dataclass(frozen=True)
class RunnerGroup:
    id: int
    name: str


_BOM = b"\xef\xbb\xbf"


def decode(content: bytes) -> Any:
    """A response body as JSON (None when empty), a UTF-8 byte-order mark trimmed first (the
    service has sent one)."""
    content = content.removeprefix(_BOM).strip()
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        raise WireError("the Actions service answered with a body that is not JSON") from None


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WireError(f"the Actions service sent {what} that is not a JSON object")
    return value


def _int(value: Any, default: int = 0) -> int:
    """An integer field that may come as a number or a numeric string (``jobId``)."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _epoch(value: Any) -> float | None:
    """A .NET/ISO timestamp as epoch seconds; None when absent or the zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # .NET writes up to 7 fractional digits; Python reads at most 6.
    head, dot, rest = text.partition(".")
    if dot:
        zone_at = next((i for i, c in enumerate(rest) if not c.isdigit()), len(rest))
        digits, zone = rest[:zone_at], rest[zone_at:]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def parse_statistics(value: Any) -> ScaleSetStatistics:
    """``statistics`` (absent or null: all zero)."""
    if not isinstance(value, Mapping):
        return ScaleSetStatistics()
    return ScaleSetStatistics(
        **{name: _int(value.get(key)) for name, key in _STATISTICS_KEYS.items()}
    )


def parse_event(value: Any) -> ScaleSetEvent | None:
    """One job message of a batch; None for a type runnerscale does not act on."""
    item = _object(value, "a job message")
    kind = _EVENT_KINDS.get(str(item.get("messageType", "")))
    if kind is None:
        log.debug("ignoring a scale-set job message of type %r", item.get("messageType"))
        return None
    owner = str(item.get("ownerName") or "")
    name = str(item.get("repositoryName") or "")
    labels = item.get("requestLabels") or []
    has_runner = kind in (ScaleSetEventKind.JOB_STARTED, ScaleSetEventKind.JOB_COMPLETED)
    return ScaleSetEvent(
        kind=kind,
        runner_request_id=_int(item.get("runnerRequestId")),
        job_id=_int(item.get("jobId")),
        repository=f"{owner}/{name}" if owner and name else owner or name,
        workflow_run_id=_int(item.get("workflowRunId")) or None,
        job_name=str(item["jobDisplayName"]) if item.get("jobDisplayName") else None,
        labels=tuple(str(label) for label in labels if isinstance(label, str)),
        queued_at=_epoch(item.get("queueTime")),
        runner_id=(_int(item.get("runnerId")) or None) if has_runner else None,
        runner_name=str(item["runnerName"]) if has_runner and item.get("runnerName") else None,
        result=str(item["result"])
        if kind is ScaleSetEventKind.JOB_COMPLETED and item.get("result")
        else None,
    )


def parse_message(value: Any) -> ScaleSetMessage:
    """A long poll's 200: the envelope, its statistics, and the job messages of its body."""
    envelope = _object(value, "a message")
    kind = envelope.get("messageType")
    if kind != JOB_MESSAGES:
        raise WireError(
            f"the Actions service sent a message of type {kind!r}, not {JOB_MESSAGES!r}: "
            "runnerscale does not understand it (is the service newer than this client?)"
        )
    body = envelope.get("body") or "[]"
    if not isinstance(body, str):
        raise WireError("the Actions service sent a message whose body is not a JSON string")
    try:
        items = json.loads(body)
    except ValueError:
        raise WireError("the Actions service sent a message whose body is not JSON") from None
    if not isinstance(items, list):
        raise WireError("the Actions service sent a message whose body is not a JSON array")
    events = (parse_event(item) for item in items)
    return ScaleSetMessage(
        message_id=_int(envelope.get("messageId")),
        statistics=parse_statistics(envelope.get("statistics")),
        events=tuple(event for event in events if event is not None),
    )


def parse_scale_set(value: Any) -> ScaleSet:
    item = _object(value, "a scale set")
    labels = item.get("labels") or []
    return ScaleSet(
        id=_int(item.get("id")),
        name=str(item.get("name") or ""),
        runner_group_id=_int(item.get("runnerGroupId")),
        runner_group_name=str(item.get("runnerGroupName") or ""),
        labels=tuple(
            str(label["name"])
            for label in labels
            if isinstance(label, Mapping) and label.get("name")
        ),
    )


def listed(value: Any, what: str) -> list[Any]:
    """The ``value`` array of a ``{count, value}`` list answer."""
    items = _object(value, f"a list of {what}").get("value") or []
    if not isinstance(items, list):
        raise WireError(f"the Actions service sent a list of {what} without a value array")
    return items


def parse_runner_group(value: Any) -> RunnerGroup:
    item = _object(value, "a runner group")
    return RunnerGroup(id=_int(item.get("id")), name=str(item.get("name") or ""))


def scale_set_labels(spec_name: str, extra: Sequence[str]) -> tuple[str, ...]:
    """A scale set's labels: its own name first, then the extra ones (each once)."""
    labels: list[str] = [spec_name]
    for label in extra:
        if label.lower() not in (known.lower() for known in labels):
            labels.append(label)
    return tuple(labels)


def scale_set_body(
    name: str, group: RunnerGroup, labels: Sequence[str], scale_set_id: int | None = None
) -> dict[str, Any]:
    """A ``RunnerScaleSet`` to create or update (note the capitalised ``RunnerSetting``)."""
    body: dict[str, Any] = {
        "name": name,
        "runnerGroupId": group.id,
        "runnerGroupName": group.name,
        "labels": [{"type": SYSTEM_LABEL, "name": label} for label in labels],
        "RunnerSetting": {"disableUpdate": False},
    }
    if scale_set_id is not None:
        body["id"] = scale_set_id
    return body


def parse_session(value: Any) -> SessionInfo:
    item = _object(value, "a message session")
    session_id = str(item.get("sessionId") or "")
    queue_url = str(item.get("messageQueueUrl") or "")
    token = str(item.get("messageQueueAccessToken") or "")
    if not session_id or not queue_url or not token:
        raise WireError(
            "the Actions service sent a message session without sessionId, messageQueueUrl "
            "or messageQueueAccessToken"
        )
    return SessionInfo(session_id, queue_url, token, parse_statistics(item.get("statistics")))


def parse_jit_config(value: Any) -> JitConfig:
    item = _object(value, "a JIT configuration")
    runner = _object(item.get("runner"), "a JIT configuration's runner")
    encoded = item.get("encodedJITConfig")
    if not isinstance(encoded, str) or not encoded:
        raise WireError("the Actions service sent a JIT configuration without encodedJITConfig")
    return JitConfig(runner_id=_int(runner.get("id")), encoded=encoded)


def parse_connection(value: Any) -> AdminConnection:
    item = _object(value, "an admin connection")
    url, token = item.get("url"), item.get("token")
    if not isinstance(url, str) or not url or not isinstance(token, str) or not token:
        raise WireError("runner-registration answered without a tenant url and token")
    return AdminConnection(tenant_url=url, token=token)


def parse_acquired(value: Any) -> list[int]:
    return [_int(item) for item in listed(value, "acquired jobs")]
