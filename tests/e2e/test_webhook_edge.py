"""Webhooks at the daemon's edge (issue 12), over real HTTP against the simulator.

Each finding, as filed, is a test here: a validly signed delivery that GitHub would never send
(a year-1 date, a job id of 2**63, 10,000 labels, a NUL in a label) is a 400 naming the field,
and leaves no traceback, no raw control character and no oversized line in the daemon's log,
and nothing dropped after the fact; a failure of our own is a 500 whose traceback is logged
through the redaction. The daemon runs in-process (its log read through the daemon's own
handler, ``tests.logcapture``), and once as ``runnerscale run``, whose log file is read as is.

Then the endpoint is fuzzed (hypothesis): validly signed deliveries made from GitHub's
published examples with fields changed, dropped or replaced by any JSON, random bytes, and
deep nesting, each with a delivery GUID that may be anything printable. Whatever arrives, the
answer is never a 5xx; what GitHub never sends (by an oracle written apart from
``github/fields.py``, from the limits its docstring gives) is always a 400, and what GitHub
can send is always taken. Afterwards the daemon is healthy, nothing failed in its loops, its
store holds exactly the jobs it accepted, and its log is clean. Hypothesis drives a
synchronous client from a worker thread while the daemon serves on the test's event loop; the
run is derandomized (the same deliveries every run, in CI too) and bounded to a few hundred
deliveries.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import signal
import string
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runnerscale.daemon import Daemon
from runnerscale.fakegithub.server import SimulatorOptions, SimulatorServer
from runnerscale.github.webhooks import sign
from runnerscale.model import JobState
from tests.contract.openapi import contract_dir
from tests.e2e.control import control_client
from tests.e2e.harness import (
    TOKEN,
    WEBHOOK_SECRET,
    in_process_daemon,
    local_pool,
    start_daemon_process,
    wait_until,
    write_config,
)
from tests.logcapture import daemon_log

pytestmark = pytest.mark.timeout(300)

EXAMPLES = contract_dir() / "webhooks" / "workflow_job"
#: The only label of the daemon's pool: no delivery here asks for it, so no runner is started.
POOL_LABEL = "rs-edge-only"
#: The longest line a delivery may leave in the log (a refusal, an unmatched job).
MAX_LINE = 1_000

Payload = dict[str, Any]


def ours(example: Payload) -> Payload:
    """A published example, moved to the daemon's target (acme/app), so it is stored."""
    payload = copy.deepcopy(example)
    payload["repository"]["full_name"] = "acme/app"
    payload["repository"]["owner"]["login"] = "acme"
    return payload


QUEUED = ours(json.loads((EXAMPLES / "queued.payload.json").read_bytes()))


def headers(body: bytes, delivery: str, event: str = "workflow_job") -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(WEBHOOK_SECRET, body),
        "Content-Type": "application/json",
    }


def edge_config(directory: Path, api_url: str) -> Path:
    """A daemon for acme/app whose one pool no delivery here matches. It polls and sweeps once,
    at start: the janitor's pruning of jobs completed long ago (the published examples are
    from 2021) would otherwise take accepted jobs out of the store while a test counts them."""
    pool = local_pool(directory, 2, "2s").replace("[self-hosted, linux, x64]", f"[{POOL_LABEL}]")
    assert POOL_LABEL in pool
    config = write_config(directory, api_url, poll_interval="1h", pools=pool)
    text = config.read_text()
    assert "janitor_interval: 2s" in text
    config.write_text(text.replace("janitor_interval: 2s", "janitor_interval: 1h"))
    return config


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    """The simulated GitHub, holding the daemon's target (acme/app)."""
    server = SimulatorServer(SimulatorOptions(tokens=(TOKEN,)))
    server.simulator.world.ensure_repo("acme/app")
    async with server:
        yield server


@pytest.fixture
async def daemon(simulator: SimulatorServer, tmp_path: Path) -> AsyncIterator[Daemon]:
    async with in_process_daemon(edge_config(tmp_path, simulator.url)) as running:
        yield running


def stored_ids(daemon: Daemon) -> set[int]:
    return {job.id for job in daemon.store.jobs(list(JobState))}


def log_problems(text: str) -> list[str]:
    """What a delivery must never leave in the log."""
    problems = []
    if "Traceback" in text:
        problems.append("a traceback")
    if WEBHOOK_SECRET in text:
        problems.append("the webhook secret")
    raw = sorted({f"U+{ord(c):04X}" for c in text if not c.isprintable() and c != "\n"})
    if raw:
        problems.append(f"raw control characters {raw}")
    longest = max((len(line) for line in text.splitlines()), default=0)
    if longest > MAX_LINE:
        problems.append(f"a line of {longest} characters")
    return problems


def job(**fields: object) -> Callable[[Payload], object]:
    return lambda payload: payload["workflow_job"].update(fields)


#: The findings of issue 12: a delivery, and the field its 400 must name.
FINDINGS = {
    "year-1-date": (job(created_at="0001-01-01T00:00:00"), "workflow_job.created_at"),
    "id-2**63": (job(id=2**63), "workflow_job.id"),
    "10000-labels": (job(labels=[f"label-{i}" for i in range(10_000)]), "workflow_job.labels"),
    "nul-in-a-label": (job(labels=["self-hosted", "gpu\x00"]), "workflow_job.labels.1"),
}


def finding(name: str) -> bytes:
    mutate, _ = FINDINGS[name]
    payload = copy.deepcopy(QUEUED)
    payload["workflow_job"]["id"] = 1_000_001
    mutate(payload)
    return json.dumps(payload).encode()


@pytest.mark.parametrize("name", FINDINGS)
async def test_each_finding_is_a_400_naming_the_field_and_nothing_is_lost(
    daemon: Daemon, name: str
) -> None:
    _, field = FINDINGS[name]
    valid = json.dumps(QUEUED).encode()
    with daemon_log([WEBHOOK_SECRET]) as log:
        async with httpx.AsyncClient(base_url=daemon.url) as http:
            refused = await http.post(
                "/webhook", content=finding(name), headers=headers(finding(name), "d-bad")
            )
            assert refused.status_code == 400, refused.text
            assert f"{field}:" in refused.json()["message"]
            assert len(refused.text) < MAX_LINE
            # The same delivery GUID is free for the next one: a refusal is not remembered.
            taken = await http.post("/webhook", content=valid, headers=headers(valid, "d-bad"))
            assert taken.status_code == 202, taken.text
        # Only the valid job is stored, and nothing failed after a 202.
        await wait_until(lambda: stored_ids(daemon) == {QUEUED["workflow_job"]["id"]}, 10, "job")
        assert "events" not in daemon.controller.errors
    assert log_problems(log.getvalue()) == []
    assert "webhook: refused delivery d-bad: " in log.getvalue()


async def test_a_failure_of_our_own_is_a_500_with_its_traceback_redacted(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(batch: object, now: float) -> bool:
        raise RuntimeError(f"the database is gone (connected with {WEBHOOK_SECRET})")

    # (a delivery's GUID and job are written together: Store.take_deliveries)
    monkeypatch.setattr(daemon.store, "take_deliveries", broken)
    body = json.dumps(QUEUED).encode()
    with daemon_log([WEBHOOK_SECRET]) as log:
        async with httpx.AsyncClient(base_url=daemon.url) as http:
            answer = await http.post("/webhook", content=body, headers=headers(body, "d-500"))
            health = await http.get("/healthz")
    assert answer.status_code == 500
    assert answer.json() == {"message": "the delivery could not be taken: see the daemon's log"}
    assert health.status_code == 200
    text = log.getvalue()
    assert "runnerscale.server: webhook: delivery d-500 failed" in text
    assert "RuntimeError: the database is gone (connected with ***)" in text
    assert WEBHOOK_SECRET not in text


async def test_the_daemon_process_refuses_the_findings_and_its_log_stays_clean(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = edge_config(tmp_path, simulator.url)
    port = int(config.read_text().split("listen: 127.0.0.1:")[1].split()[0])
    log = tmp_path / "daemon.log"
    process = await start_daemon_process(config, log)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
            control_client(config) as control,
        ):
            await wait_until(lambda: _reachable(http), 30, "the daemon to listen")
            for name in FINDINGS:
                body = finding(name)
                answer = await http.post("/webhook", content=body, headers=headers(body, name))
                assert answer.status_code == 400, (name, answer.text)
            valid = json.dumps(QUEUED).encode()
            taken = await http.post("/webhook", content=valid, headers=headers(valid, "ok"))
            assert taken.status_code == 202

            async def queued() -> bool:
                status = (await control.get("/api/v1/status")).json()
                return bool(status["jobs"].get("queued") == 1)

            await wait_until(queued, 10, "the valid job in the status")
            assert (await control.get("/api/v1/status")).json()["errors"] == {}
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()
    assert process.returncode == 0
    text = log.read_text(errors="strict")
    assert log_problems(text) == []
    assert text.count("webhook: refused delivery") == len(FINDINGS)


async def _reachable(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


# --- the fuzz -----------------------------------------------------------------------------

MAX_EXAMPLES = 300
PUBLISHED = [
    ours(json.loads(path.read_bytes())) for path in sorted(EXAMPLES.glob("*.payload.json"))
]

# The fuzz's oracle: GitHub's limits as the fields module's docstring states them, checked
# here without its code.
MAX_ID = 2**63 - 1
MAX_LABELS = 103
CAPS = {"name": 1024, "workflow_name": 1024, "head_branch": 1024, "runner_name": 255}
FORBIDDEN = {"Cc", "Cs", "Zl", "Zp"}


def clean(text: str, cap: int) -> bool:
    return len(text) <= cap and not any(unicodedata.category(c) in FORBIDDEN for c in text)


@dataclass
class Delivery:
    """A body to sign and send, and what the daemon must answer: ``refuse`` True (a 400),
    False (taken: 200 or 202), or None (either: a change no oracle here judges)."""

    body: bytes
    refuse: bool | None
    job_id: int | None = None
    guid: str = ""
    notes: list[str] = field(default_factory=list)


def delivery(payload: Payload, refuse: bool | None, note: str) -> Delivery:
    job_id = payload.get("workflow_job", {}).get("id")
    return Delivery(json.dumps(payload).encode(), refuse, job_id, notes=[note])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
#: Every path the daemon reads (and some it does not).
PATHS = [
    ("action",),
    *(
        ("workflow_job", key)
        for key in [
            "id",
            "run_id",
            "run_attempt",
            "name",
            "status",
            "conclusion",
            "labels",
            "runner_id",
            "runner_name",
            "runner_group_id",
            "runner_group_name",
            "created_at",
            "started_at",
            "completed_at",
            "workflow_name",
            "head_branch",
            "html_url",
            "steps",
        ]
    ),
    ("repository", "id"),
    ("repository", "name"),
    ("repository", "full_name"),
    ("repository", "owner"),
    ("repository", "owner", "login"),
    ("repository", "owner", "id"),
    ("organization",),
    ("installation",),
    ("sender",),
]


def at(payload: Payload, path: tuple[str, ...]) -> tuple[Any, str]:
    parent: Any = payload
    for key in path[:-1]:
        parent = parent.setdefault(key, {}) if isinstance(parent, dict) else {}
    return parent, path[-1]


@st.composite
def anything_anywhere(draw: st.DrawFn) -> Delivery:
    """A field changed to any JSON value, or dropped: no oracle, only "no 5xx"."""
    payload = copy.deepcopy(draw(st.sampled_from(PUBLISHED)))
    path = draw(st.sampled_from(PATHS))
    parent, key = at(payload, path)
    if isinstance(parent, dict):
        if draw(st.booleans()):
            parent[key] = draw(json_values)
        else:
            parent.pop(key, None)
    return delivery(payload, None, f"changed {'.'.join(path)}")


@st.composite
def id_fields(draw: st.DrawFn) -> Delivery:
    payload = copy.deepcopy(draw(st.sampled_from(PUBLISHED)))
    path = draw(
        st.sampled_from([("workflow_job", "id"), ("workflow_job", "run_id"), ("repository", "id")])
    )
    value = draw(
        st.integers(min_value=-(2**70), max_value=2**70)
        | st.sampled_from([0, 1, MAX_ID, MAX_ID + 1, 2**64])
    )
    parent, key = at(payload, path)
    parent[key] = value
    return delivery(payload, not 1 <= value <= MAX_ID, f"{'.'.join(path)} = {value}")


printable = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))


@st.composite
def labels(draw: st.DrawFn) -> Delivery:
    payload = copy.deepcopy(draw(st.sampled_from(PUBLISHED)))
    label = (
        st.text(printable, max_size=20) | st.text(max_size=20) | st.text(min_size=250, max_size=260)
    )
    values = draw(st.lists(label, max_size=MAX_LABELS + 3) | st.lists(label, max_size=4))
    payload["workflow_job"]["labels"] = values
    ok = len(values) <= MAX_LABELS and all(clean(value, 255) for value in values)
    return delivery(payload, not ok, f"{len(values)} labels")


@st.composite
def names(draw: st.DrawFn) -> Delivery:
    payload = copy.deepcopy(draw(st.sampled_from(PUBLISHED)))
    key = draw(st.sampled_from(sorted(CAPS)))
    value = draw(st.text(max_size=30) | st.text(printable, max_size=30) | st.text(min_size=1020))
    payload["workflow_job"][key] = value
    return delivery(payload, not clean(value, CAPS[key]), f"workflow_job.{key}")


@st.composite
def dates(draw: st.DrawFn) -> Delivery:
    payload = copy.deepcopy(draw(st.sampled_from(PUBLISHED)))
    key = draw(st.sampled_from(["created_at", "started_at", "completed_at"]))
    moment = draw(st.datetimes(timezones=st.none() | st.just(UTC)))
    payload["workflow_job"][key] = moment.isoformat()
    now = datetime.now(UTC)
    if moment.tzinfo is None or moment.year < 2008 or moment > now + timedelta(days=2):
        refuse: bool | None = True
    elif moment < now:
        refuse = False
    else:
        refuse = None  # up to two days ahead: the limit (a day) lies in between
    return delivery(payload, refuse, f"workflow_job.{key} = {moment.isoformat()}")


random_bytes = st.binary(max_size=600).map(lambda body: Delivery(body, True, notes=["bytes"]))


@st.composite
def nested(draw: st.DrawFn) -> Delivery:
    """Deep nesting in a field the daemon ignores, or as the whole body."""
    depth = draw(st.integers(min_value=1, max_value=20_000))
    deep = "[" * depth + "]" * depth
    if draw(st.booleans()):
        return Delivery(deep.encode(), True, notes=[f"a body nested {depth} deep"])
    payload = copy.deepcopy(draw(st.sampled_from(PUBLISHED)))
    text = json.dumps(payload)
    body = text[:-1] + f', "ignored": {deep}}}'
    job_id = payload["workflow_job"]["id"]
    return Delivery(body.encode(), None, job_id, notes=[f"an extra field nested {depth} deep"])


guid_counter = itertools.count()


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    sent = draw(
        st.one_of(
            anything_anywhere(),
            id_fields(),
            labels(),
            names(),
            dates(),
            random_bytes,
            nested(),
            st.sampled_from(PUBLISHED).map(lambda p: delivery(p, False, "as published")),
        )
    )
    visible_ascii = string.digits + string.ascii_letters + string.punctuation
    ascii_guid = st.text(visible_ascii, min_size=1, max_size=300)
    guid = draw(st.just("") | ascii_guid)
    if len(guid) > 255:
        sent.refuse = True
    sent.guid = guid or f"fuzz-{next(guid_counter)}"
    return sent


async def test_no_delivery_gets_a_5xx_and_the_daemon_holds_only_valid_jobs(daemon: Daemon) -> None:
    accepted: set[int] = set()
    answers: dict[int, int] = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(deliveries())
    def one(sent: Delivery) -> None:
        answer = client.post("/webhook", content=sent.body, headers=headers(sent.body, sent.guid))
        answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
        assert answer.status_code in (200, 202, 400), (sent.notes, answer.text)
        message = answer.json()["message"]
        assert isinstance(message, str)
        assert len(message) < 1_000
        if sent.refuse is not None:
            assert (answer.status_code == 400) == sent.refuse, (sent.notes, message)
        if answer.status_code == 202 and message == "accepted":
            assert sent.job_id is not None
            accepted.add(sent.job_id)

    with daemon_log([WEBHOOK_SECRET]) as log, httpx.Client(base_url=daemon.url) as client:
        await asyncio.to_thread(one)
        # Every delivery taken is folded into the store, and nothing else is.
        await wait_until(lambda: accepted <= stored_ids(daemon), 30, "the accepted jobs")
        assert stored_ids(daemon) == accepted
        async with (
            httpx.AsyncClient(base_url=daemon.url) as http,
            control_client(daemon) as control,
        ):
            health = await http.get("/healthz")
            status = (await control.get("/api/v1/status")).json()
    # Both kinds were sent.
    assert answers.get(400), answers
    assert answers.get(202), answers
    assert accepted
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert status["errors"] == {}
    assert daemon.store.runners() == []  # no delivery here asks for the pool's label
    assert log_problems(log.getvalue()) == []
