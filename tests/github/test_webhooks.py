"""The production webhook model against GitHub's published ``workflow_job`` examples.

The examples are the only real deliveries we have; if one stops parsing, the autoscaler would
drop real jobs on the floor. The signature tests pin the exact security behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runnerscale.github import webhooks
from runnerscale.github.webhooks import (
    WebhookPayloadError,
    parse_workflow_job_event,
    sign,
    verify_signature,
)
from tests.contract.openapi import contract_dir

WORKFLOW_JOB_DIR = contract_dir() / "webhooks" / "workflow_job"
EXAMPLES = sorted(WORKFLOW_JOB_DIR.glob("*.payload.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_bytes())
    return data


def test_all_published_examples_are_found() -> None:
    assert len(EXAMPLES) == 7, [path.name for path in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_published_example_parses_as_is(path: Path) -> None:
    raw = path.read_bytes()
    data = json.loads(raw)

    event = parse_workflow_job_event(raw)

    assert event.action == data["action"] == path.name.split(".")[0]
    job = event.workflow_job
    assert job.id == data["workflow_job"]["id"]
    assert job.run_id == data["workflow_job"]["run_id"]
    assert job.status == data["workflow_job"]["status"]
    assert job.labels == data["workflow_job"]["labels"]
    assert job.runner_name == data["workflow_job"]["runner_name"]
    assert job.created_at.tzinfo is not None
    assert event.repo_full_name == data["repository"]["full_name"]
    assert event.owner == data["repository"]["owner"]["login"]
    assert event.installation_id == data.get("installation", {}).get("id")
    assert event.organization_login == data.get("organization", {}).get("login")
    assert event.sender_login == data["sender"]["login"]
    # str input takes the same path as bytes.
    assert parse_workflow_job_event(raw.decode()) == event


def test_completed_example_details() -> None:
    event = parse_workflow_job_event(
        (WORKFLOW_JOB_DIR / "completed.failure.with-organization.payload.json").read_bytes()
    )
    job = event.workflow_job
    assert job.conclusion == "failure"
    assert job.completed_at == datetime(2021, 8, 5, 10, 38, 16, tzinfo=UTC)
    assert job.runner_group_name == "GitHub Actions"
    assert job.workflow_name == "CodeQL"
    assert job.head_branch == "main"
    assert event.organization_login == "Octocoders"
    assert event.installation_id is None


def test_action_and_status_may_differ() -> None:
    # GitHub announces a job held by an environment as action=queued, status=waiting.
    event = parse_workflow_job_event(
        (WORKFLOW_JOB_DIR / "queued.with-deployment.payload.json").read_bytes()
    )
    assert event.action == "queued"
    assert event.workflow_job.status == "waiting"
    assert event.workflow_job.runner_id is None


def test_unknown_fields_are_ignored() -> None:
    data = _load(WORKFLOW_JOB_DIR / "queued.payload.json")
    data["brand_new_top_level"] = {"x": 1}
    data["workflow_job"]["brand_new_field"] = [1, 2, 3]
    data["repository"]["owner"]["another"] = None
    assert parse_workflow_job_event(json.dumps(data)).workflow_job.id == 289782451


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"\xff\xfe\x00", "{'action': 'queued'}"],
    ids=["empty", "truncated", "text", "not-utf8", "python-repr"],
)
def test_malformed_json_is_a_payload_error(body: bytes | str) -> None:
    with pytest.raises(WebhookPayloadError, match="not valid JSON"):
        parse_workflow_job_event(body)


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(WebhookPayloadError, ValueError)


def test_missing_workflow_job_is_named_without_dumping_the_payload() -> None:
    data = _load(WORKFLOW_JOB_DIR / "completed.success.with-organization.payload.json")
    del data["workflow_job"]

    with pytest.raises(WebhookPayloadError) as caught:
        parse_workflow_job_event(json.dumps(data).encode())

    message = str(caught.value)
    assert "workflow_job" in message
    assert "Field required" in message
    assert "Hello-World" not in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(action="started"), "action"),
        (lambda d: d["workflow_job"].update(status="running"), "workflow_job.status"),
        (lambda d: d["workflow_job"].update(labels="self-hosted"), "workflow_job.labels"),
        (lambda d: d["workflow_job"].update(id="abc"), "workflow_job.id"),
        (lambda d: d["workflow_job"].update(created_at="yesterday"), "workflow_job.created_at"),
        (lambda d: d["repository"].pop("full_name"), "repository.full_name"),
        (lambda d: d["installation"].pop("id"), "installation.id"),
    ],
    ids=["action", "status", "labels", "id", "created_at", "full_name", "installation"],
)
def test_payload_that_does_not_fit_names_the_field(mutate: Any, where: str) -> None:
    data = _load(WORKFLOW_JOB_DIR / "queued.payload.json")
    mutate(data)
    with pytest.raises(WebhookPayloadError, match="does not fit") as caught:
        parse_workflow_job_event(json.dumps(data))
    assert where in str(caught.value)


@pytest.mark.parametrize("body", [b"[]", b"null", b'"workflow_job"', b"42"])
def test_non_object_body_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError, match="<body>"):
        parse_workflow_job_event(body)


def test_many_errors_are_capped() -> None:
    with pytest.raises(WebhookPayloadError, match=r"and \d+ more"):
        parse_workflow_job_event(b'{"workflow_job": {}}')


# --- signatures ----------------------------------------------------------------------------

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
# The worked example from GitHub's "Validating webhook deliveries" documentation.
DOCUMENTED_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_sign_matches_githubs_documented_example() -> None:
    assert sign(SECRET, BODY) == DOCUMENTED_SIGNATURE


def test_sign_verify_round_trip() -> None:
    body = (WORKFLOW_JOB_DIR / "queued.payload.json").read_bytes()
    assert verify_signature("s3cret", body, sign("s3cret", body))


def test_verify_accepts_documented_example_and_upper_case_hex() -> None:
    assert verify_signature(SECRET, BODY, DOCUMENTED_SIGNATURE)
    prefix, digest = DOCUMENTED_SIGNATURE.split("=")
    assert verify_signature(SECRET, BODY, f"{prefix}={digest.upper()}")


def test_verify_rejects_wrong_secret() -> None:
    assert not verify_signature("another secret", BODY, DOCUMENTED_SIGNATURE)


def test_verify_rejects_tampered_body() -> None:
    assert not verify_signature(SECRET, BODY + b" ", DOCUMENTED_SIGNATURE)
    assert not verify_signature(SECRET, b"Hello, World?", DOCUMENTED_SIGNATURE)


def test_verify_rejects_empty_secret_even_when_signed_with_it() -> None:
    assert not verify_signature("", BODY, sign("", BODY))


def test_verify_rejects_the_legacy_sha1_signature() -> None:
    sha1 = "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert not verify_signature(SECRET, BODY, sha1)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        " " + DOCUMENTED_SIGNATURE,
        DOCUMENTED_SIGNATURE + "\n",
        DOCUMENTED_SIGNATURE + "00",
        DOCUMENTED_SIGNATURE[:-1],
        DOCUMENTED_SIGNATURE[:-1] + "g",
        DOCUMENTED_SIGNATURE[:-1] + "é",
        "sha256=" + "٣" * 64,  # non-ASCII digits must not reach compare_digest
        "garbage",
    ],
)
def test_verify_rejects_missing_or_malformed_header_without_raising(header: str | None) -> None:
    assert verify_signature(SECRET, BODY, header) is False


# --- delivery header names -----------------------------------------------------------------


def test_header_names_are_the_documented_ones() -> None:
    documented = {
        header["name"]
        for header in json.loads((contract_dir() / "headers.json").read_text())[
            "webhook_delivery_headers"
        ]["headers"]
    }
    ours = {
        webhooks.HEADER_EVENT,
        webhooks.HEADER_DELIVERY,
        webhooks.HEADER_HOOK_ID,
        webhooks.HEADER_TARGET_TYPE,
        webhooks.HEADER_TARGET_ID,
        webhooks.HEADER_SIGNATURE_256,
        webhooks.HEADER_SIGNATURE_SHA1,
    }
    assert ours <= documented
    # Everything documented for github.com (GHES-only headers and User-Agent aside) is named.
    assert documented - ours == {
        "User-Agent",
        "X-GitHub-Enterprise-Version",
        "X-GitHub-Enterprise-Host",
    }
    assert webhooks.WORKFLOW_JOB_EVENT == "workflow_job"
