"""Parsing the Actions service's JSON (shapes from the Go client's ``types.go``)."""

from __future__ import annotations

import json
import logging

import pytest

from runnerscale.github.scaleset.wire import (
    WireError,
    decode,
    parse_jit_config,
    parse_message,
    parse_scale_set,
    parse_session,
    scale_set_labels,
)
from runnerscale.scaleset_api import ScaleSetEventKind, ScaleSetStatistics

from .fake_actions import job

STATISTICS = {
    "totalAvailableJobs": 1,
    "totalAcquiredJobs": 2,
    "totalAssignedJobs": 3,
    "totalRunningJobs": 4,
    "totalRegisteredRunners": 5,
    "totalBusyRunners": 6,
    "totalIdleRunners": 7,
}


def envelope(
    *jobs: dict[str, object], kind: str = "RunnerScaleSetJobMessages"
) -> dict[str, object]:
    return {
        "messageId": 9,
        "messageType": kind,
        "body": json.dumps(list(jobs)),
        "statistics": STATISTICS,
    }


def test_the_envelope_its_statistics_and_the_body_string() -> None:
    message = parse_message(
        envelope(
            job("JobAvailable", 1, acquireJobUrl="https://x/acquire"),
            job("JobAssigned", 2),
            job("JobStarted", 3, runnerId=41, runnerName="rs-1"),
            job("JobCompleted", 4, runnerId=42, runnerName="rs-2", result="canceled"),
        )
    )
    assert message.message_id == 9
    assert message.statistics == ScaleSetStatistics(1, 2, 3, 4, 5, 6, 7)
    available, assigned, started, completed = message.events
    assert [e.kind for e in message.events] == list(ScaleSetEventKind)
    assert available.runner_request_id == 1
    assert available.runner_id is None
    assert assigned.repository == "acme/app"
    assert assigned.job_id == 20  # jobId is a string on the wire
    assert assigned.workflow_run_id == 502
    assert assigned.job_name == "build 2"
    assert assigned.labels == ("runnerscale-x64",)
    assert assigned.queued_at == pytest.approx(1_767_225_605.123456)
    assert (started.runner_id, started.runner_name, started.result) == (41, "rs-1", None)
    assert (completed.runner_id, completed.result) == (42, "canceled")


def test_unknown_inner_types_are_ignored_with_a_debug_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, "runnerscale.github.scaleset"):
        message = parse_message(envelope(job("JobRerouted", 1), job("JobAssigned", 2)))
    assert [e.runner_request_id for e in message.events] == [2]
    assert "JobRerouted" in caplog.text


def test_drifted_fields_take_their_zero() -> None:
    event = parse_message(
        envelope(
            {"messageType": "JobAssigned", "runnerRequestId": 0, "jobId": "", "queueTime": None}
        )
    ).events[0]
    assert (event.job_id, event.runner_request_id, event.repository, event.queued_at) == (
        0,
        0,
        "",
        None,
    )
    empty = parse_message({"messageId": 1, "messageType": "RunnerScaleSetJobMessages"})
    assert empty.events == ()
    assert empty.statistics == ScaleSetStatistics()


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (envelope(kind="RunnerScaleSetSomethingElse"), "of type 'RunnerScaleSetSomethingElse'"),
        ({"messageType": "RunnerScaleSetJobMessages", "body": [1]}, "not a JSON string"),
        ({"messageType": "RunnerScaleSetJobMessages", "body": "{"}, "body is not JSON"),
        ({"messageType": "RunnerScaleSetJobMessages", "body": "{}"}, "not a JSON array"),
        ([], "not a JSON object"),
    ],
)
def test_bad_envelopes_are_clear_errors(payload: object, match: str) -> None:
    with pytest.raises(WireError, match=match):
        parse_message(payload)


def test_bodies_lose_their_byte_order_mark() -> None:
    assert decode(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert decode(b"") is None
    with pytest.raises(WireError, match="not JSON"):
        decode(b"<html>")


def test_scale_sets_sessions_and_jit_configs() -> None:
    scale_set = parse_scale_set(
        {
            "id": 3,
            "name": "rs-x64",
            "runnerGroupId": 1,
            "runnerGroupName": "Default",
            "labels": [{"type": "System", "name": "rs-x64"}, {"name": "linux"}],
            "RunnerSetting": {},
        }
    )
    assert (scale_set.id, scale_set.labels, scale_set.runner_group_name) == (
        3,
        ("rs-x64", "linux"),
        "Default",
    )
    session = parse_session(
        {
            "sessionId": "s-1",
            "messageQueueUrl": "https://b/q",
            "messageQueueAccessToken": "QUEUE_SECRET",
            "statistics": STATISTICS,
        }
    )
    assert session.statistics.assigned_jobs == 3
    assert "QUEUE_SECRET" not in repr(session)
    with pytest.raises(WireError, match="messageQueueAccessToken"):
        parse_session({"sessionId": "s-1"})
    jit = parse_jit_config(
        {"runner": {"id": 8, "name": "r", "runnerScaleSetId": 3}, "encodedJITConfig": "JIT_SECRET"}
    )
    assert jit.runner_id == 8
    assert "JIT_SECRET" not in repr(jit)
    assert scale_set_labels("rs", ["linux", "RS", "x64", "linux"]) == ("rs", "linux", "x64")
