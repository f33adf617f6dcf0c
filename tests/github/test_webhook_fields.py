"""The limits of what GitHub sends (``github/fields.py``), at the one intake of deliveries.

Each refusal is a :class:`WebhookPayloadError` (the server's 400) naming the field, never an
exception of another kind later on. The first tests are the findings of issue 12: before the
limits, a year-1 date raised ``ValueError`` in ``timestamp()`` (a 500), and a job id of 2**63
was taken, to fail in the store (a job lost after the 202).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runnerscale.github.fields import MAX_ID, MAX_LABELS, MAX_NAME
from runnerscale.github.webhooks import (
    Verdict,
    WebhookIntake,
    WebhookPayloadError,
    parse_workflow_job_event,
)
from runnerscale.store import SqlStore, open_store
from runnerscale.store.memory import MemoryStore
from tests.github.test_webhooks import WORKFLOW_JOB_DIR

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
QUEUED: dict[str, Any] = json.loads((WORKFLOW_JOB_DIR / "queued.payload.json").read_bytes())

Mutation = Callable[[dict[str, Any]], object]


class FixedClock:
    def now(self) -> float:
        return NOW.timestamp()

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the intake never waits")


def mutated(mutate: Mutation) -> bytes:
    data = copy.deepcopy(QUEUED)
    mutate(data)
    return json.dumps(data).encode()


def job(**fields: object) -> Mutation:
    return lambda data: data["workflow_job"].update(fields)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    """The daemon's own store (SQLite): what it cannot hold, the intake must refuse."""
    opened = open_store(f"sqlite:///{tmp_path}/state.db")
    yield opened
    opened.close()


def intake(store: SqlStore | MemoryStore) -> WebhookIntake:
    return WebhookIntake(store, lambda repo: True, FixedClock())


def test_a_year_1_date_is_refused_not_a_crash(store: SqlStore) -> None:
    body = mutated(job(created_at="0001-01-01T00:00:00"))
    with pytest.raises(WebhookPayloadError, match=r"workflow_job\.created_at"):
        intake(store).take(body, "guid-1")


def test_a_job_id_beyond_int64_is_refused_before_the_store(store: SqlStore) -> None:
    with pytest.raises(WebhookPayloadError, match=r"workflow_job\.id"):
        intake(store).take(mutated(job(id=2**63)), "guid-1")
    # The largest id GitHub can send is taken, and the store holds it.
    taken = intake(store).take(mutated(job(id=MAX_ID)), "guid-2")
    assert taken.verdict is Verdict.ACCEPTED
    assert taken.observed is not None
    store.observe_job(taken.observed, NOW.timestamp())
    assert store.get_job(MAX_ID) is not None


def test_ten_thousand_labels_are_refused_with_a_short_reason() -> None:
    with pytest.raises(WebhookPayloadError, match=r"workflow_job\.labels") as caught:
        parse_workflow_job_event(mutated(job(labels=[f"l{i}" for i in range(10_000)])))
    assert len(str(caught.value)) < 300


def test_a_nul_in_a_label_is_refused_and_not_echoed() -> None:
    with pytest.raises(WebhookPayloadError, match=r"workflow_job\.labels\.1") as caught:
        parse_workflow_job_event(mutated(job(labels=["self-hosted", "gpu\x00evil"])))
    assert "U+0000" in str(caught.value)
    assert "evil" not in str(caught.value)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (job(id=0), "workflow_job.id"),
        (job(id=-1), "workflow_job.id"),
        (job(id="289782451"), "workflow_job.id"),
        (job(id=289782451.0), "workflow_job.id"),
        (job(id=True), "workflow_job.id"),
        (job(run_id=2**64), "workflow_job.run_id"),
        (job(run_attempt=0), "workflow_job.run_attempt"),
        (job(runner_id=-1), "workflow_job.runner_id"),
        (lambda d: d["repository"].update(id=2**63), "repository.id"),
        (lambda d: d["repository"]["owner"].update(id=0), "repository.owner.id"),
        (job(labels=["x"] * (MAX_LABELS + 1)), "workflow_job.labels"),
        (job(labels=["x" * (MAX_NAME + 1)]), "workflow_job.labels.0"),
        (job(labels=["linux\n2026-01-01 ERROR forged"]), "workflow_job.labels.0"),
        (job(labels=["\x1b[31mred"]), "workflow_job.labels.0"),
        (job(labels=["a\u2028b"]), "workflow_job.labels.0"),
        (job(labels=[7]), "workflow_job.labels.0"),
        (job(name="build\r\n"), "workflow_job.name"),
        (job(name="x" * 1025), "workflow_job.name"),
        (job(runner_name="r\x7f"), "workflow_job.runner_name"),
        (job(conclusion="Robert'); DROP TABLE jobs;--"), "workflow_job.conclusion"),
        (lambda d: d["repository"].update(full_name="acme/\x00"), "repository.full_name"),
        (lambda d: d["repository"]["owner"].update(login="a" * 256), "repository.owner.login"),
        (job(created_at="2021-09-13T02:21:13"), "workflow_job.created_at"),
        (job(created_at="2007-12-31T23:59:59Z"), "workflow_job.created_at"),
        (job(created_at="9999-12-31T23:59:59Z"), "workflow_job.created_at"),
        (job(started_at="1970-01-01T00:00:00Z"), "workflow_job.started_at"),
        (job(completed_at=(NOW + timedelta(days=2)).isoformat()), "workflow_job.completed_at"),
    ],
    ids=lambda value: value if isinstance(value, str) else "refused",
)
def test_what_github_never_sends_is_refused_by_field(mutate: Mutation, where: str) -> None:
    with pytest.raises(WebhookPayloadError, match="does not fit") as caught:
        parse_workflow_job_event(mutated(mutate), now=NOW.timestamp())
    assert where + ":" in str(caught.value)


@pytest.mark.parametrize(
    "mutate",
    [
        job(id=MAX_ID, run_id=MAX_ID),
        job(labels=[f"label-{i}" for i in range(MAX_LABELS)]),
        job(labels=["x" * MAX_NAME, "GPU 🚀", "ünïcödé", "tab-free\\x00-literal"]),
        job(labels=[]),
        job(runner_id=0, runner_name="", runner_group_id=0),
        job(name="build (ubuntu-latest, 3.12) 👩\u200d💻"),
        job(conclusion="startup_failure"),
        job(created_at="2008-01-01T00:00:00Z"),
        job(created_at="2026-12-02T23:00:00+09:00"),
        job(created_at=(NOW + timedelta(hours=23)).isoformat()),
    ],
)
def test_what_github_can_send_is_taken(mutate: Mutation) -> None:
    parse_workflow_job_event(mutated(mutate), now=NOW.timestamp())


def test_without_a_clock_only_the_fixed_bound_applies() -> None:
    # Recorded deliveries are read without a clock: a future date is no reason to refuse.
    parse_workflow_job_event(mutated(job(created_at="2090-01-01T00:00:00Z")))


@pytest.mark.parametrize(
    "guid", ["x" * 256, "with space", "tab\there", "ünï", "nul\x00"], ids=lambda g: repr(g)[:12]
)
def test_a_delivery_guid_github_never_sends_is_refused_and_not_remembered(guid: str) -> None:
    taking = intake(MemoryStore())
    body = mutated(lambda data: None)
    with pytest.raises(WebhookPayloadError, match="X-GitHub-Delivery"):
        taking.take(body, guid)
    assert taking.take(body, "72d3162e-cc78-11e3-81ab-4c9367dc0958").verdict is Verdict.ACCEPTED
