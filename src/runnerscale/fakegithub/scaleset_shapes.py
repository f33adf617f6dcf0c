"""The Actions service's JSON for runner scale sets, as ``actions/scaleset``'s ``types.go``
reads it: camelCase keys, ``RunnerSetting`` capitalised, ``jobId`` a string, times RFC 3339,
and a message envelope whose ``body`` is a JSON *string* holding the array of job messages."""

from __future__ import annotations

import json
from typing import Any

from runnerscale.clock import iso8601
from runnerscale.fakegithub.entities import Runner, RunnerGroup
from runnerscale.fakegithub.scalesets import ScaleSetRecord, Session
from runnerscale.scaleset_api import (
    ScaleSetEvent,
    ScaleSetEventKind,
    ScaleSetMessage,
    ScaleSetStatistics,
)

JSON = dict[str, Any]
#: The only outer ``messageType`` the client accepts.
ENVELOPE_TYPE = "RunnerScaleSetJobMessages"
#: What Go's zero ``time.Time`` looks like on the wire (a time not known yet).
ZERO_TIME = "0001-01-01T00:00:00Z"


def statistics(stats: ScaleSetStatistics) -> JSON:
    return {
        "totalAvailableJobs": stats.available_jobs,
        "totalAcquiredJobs": stats.acquired_jobs,
        "totalAssignedJobs": stats.assigned_jobs,
        "totalRunningJobs": stats.running_jobs,
        "totalRegisteredRunners": stats.registered_runners,
        "totalBusyRunners": stats.busy_runners,
        "totalIdleRunners": stats.idle_runners,
    }


def listing(items: list[JSON]) -> JSON:
    """The service's list shape: ``{count, value}``."""
    return {"count": len(items), "value": items}


def runner_group(group: RunnerGroup) -> JSON:
    return {"id": group.id, "name": group.name, "size": 0, "isDefaultGroup": group.default}


def scale_set(record: ScaleSetRecord, stats: ScaleSetStatistics, tenant_url: str) -> JSON:
    return {
        "id": record.id,
        "name": record.name,
        "runnerGroupId": record.group.id,
        "runnerGroupName": record.group.name,
        "labels": [{"type": "System", "name": name} for name in record.label_names],
        "RunnerSetting": {"disableUpdate": record.disable_update},
        "createdOn": iso8601(record.created_at),
        "runnerJitConfigUrl": (
            f"{tenant_url}_apis/runtime/runnerscalesets/{record.id}/generatejitconfig"
        ),
        "statistics": statistics(stats),
    }


def runner_reference(runner: Runner) -> JSON:
    return {"id": runner.id, "name": runner.name, "runnerScaleSetId": runner.scale_set_id or 0}


def session(
    found: Session, record: ScaleSetRecord, stats: ScaleSetStatistics, tenant_url: str, queue: str
) -> JSON:
    return {
        "sessionId": found.id,
        "ownerName": found.owner,
        "runnerScaleSet": scale_set(record, stats, tenant_url),
        "messageQueueUrl": queue,
        "messageQueueAccessToken": found.queue_token,
        "statistics": statistics(stats),
    }


def job_message(event: ScaleSetEvent, acquire_url: str) -> JSON:
    owner, _, repo = event.repository.partition("/")
    body: JSON = {
        "messageType": event.kind.value,
        "runnerRequestId": event.runner_request_id,
        "repositoryName": repo,
        "ownerName": owner,
        "jobId": str(event.job_id),
        "jobWorkflowRef": f"{event.repository}/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": event.job_name or "",
        "workflowRunId": event.workflow_run_id or 0,
        "eventName": "push",
        "requestLabels": list(event.labels),
        "queueTime": iso8601(event.queued_at) if event.queued_at is not None else ZERO_TIME,
        "scaleSetAssignTime": ZERO_TIME,
        "runnerAssignTime": ZERO_TIME,
        "finishTime": ZERO_TIME,
    }
    if event.kind is ScaleSetEventKind.JOB_AVAILABLE:
        body["acquireJobUrl"] = acquire_url
    if event.kind in (ScaleSetEventKind.JOB_STARTED, ScaleSetEventKind.JOB_COMPLETED):
        body["runnerId"] = event.runner_id or 0
        body["runnerName"] = event.runner_name or ""
    if event.kind is ScaleSetEventKind.JOB_COMPLETED:
        body["result"] = event.result or ""
    return body


def envelope(message: ScaleSetMessage, acquire_url: str) -> JSON:
    inner = [job_message(event, acquire_url) for event in message.events]
    return {
        "messageId": message.message_id,
        "messageType": ENVELOPE_TYPE,
        "body": json.dumps(inner, separators=(",", ":")),
        "statistics": statistics(message.statistics),
    }


def error(type_name: str, message: str) -> JSON:
    return {"typeName": type_name, "message": message}
