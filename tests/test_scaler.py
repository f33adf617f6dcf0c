"""The scaler as a plain function: table cases for each rule, property tests for the invariants."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerscale.model import (
    Job,
    JobState,
    PoolSpec,
    Runner,
    RunnerState,
    Target,
    match_pool,
    normalize_labels,
)
from runnerscale.scaler import Decision, PoolDecision, decide
from tests.examples import examples

X64 = ("self-hosted", "linux", "x64")
GPU = (*X64, "gpu")


def pool(
    name: str,
    labels: tuple[str, ...] = X64,
    max_runners: int = 4,
    *,
    min_idle: int = 0,
    idle_timeout: float = 60.0,
    order: int = 0,
) -> PoolSpec:
    return PoolSpec(
        name=name,
        labels=normalize_labels(labels),
        max_runners=max_runners,
        min_idle=min_idle,
        idle_timeout=idle_timeout,
        order=order,
    )


def job(job_id: int, labels: tuple[str, ...] = X64, state: JobState = JobState.QUEUED) -> Job:
    return Job(id=job_id, repo="o/r", labels=labels, state=state, created_at=0.0)


def runner(
    name: str,
    state: RunnerState,
    pool_name: str = "x64",
    *,
    since: float = 0.0,
    idle_since: float | None = None,
    job_id: int | None = None,
) -> Runner:
    """A runner; a busy one runs a known job unless ``job_id=0`` says its job is unknown."""
    if state is RunnerState.BUSY and job_id is None:
        job_id = 9000 + sum(map(ord, name))
    return Runner(
        name=name,
        pool=pool_name,
        target="repo:o/r",
        state=state,
        created_at=0.0,
        state_since=since,
        idle_since=idle_since,
        job_id=job_id or None,
    )


def queued(count: int, labels: tuple[str, ...] = X64, first: int = 1) -> list[Job]:
    return [job(first + i, labels) for i in range(count)]


IDLE, BUSY, BOOTING = RunnerState.IDLE, RunnerState.BUSY, RunnerState.BOOTING


@dataclass
class Case:
    id: str
    pools: list[PoolSpec]
    jobs: list[Job] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    now: float = 1000.0
    #: pool -> (create, remove)
    expect: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    unmatched: tuple[int, ...] = ()


CASES = [
    Case("empty", [pool("x64")], expect={"x64": (0, ())}),
    Case("one queued creates one", [pool("x64")], queued(1), expect={"x64": (1, ())}),
    Case(
        "three queued one booting creates two",
        [pool("x64")],
        queued(3),
        [runner("b", BOOTING)],
        expect={"x64": (2, ())},
    ),
    Case(
        "cap binds",
        [pool("x64", max_runners=4)],
        queued(5),
        [runner("busy", BUSY)],
        expect={"x64": (3, ())},
    ),
    Case(
        "min_idle keeps idle and creates to reach it",
        [pool("x64", min_idle=2)],
        runners=[runner("old", IDLE, idle_since=0.0)],
        expect={"x64": (1, ())},
    ),
    Case(
        "min_idle keeps exactly min_idle of several timed-out idle",
        [pool("x64", min_idle=1)],
        runners=[runner("a", IDLE, idle_since=0.0), runner("b", IDLE, idle_since=10.0)],
        expect={"x64": (0, ("a",))},
    ),
    Case(
        "idle past timeout removed",
        [pool("x64", idle_timeout=60)],
        runners=[runner("a", IDLE, idle_since=0.0)],
        now=60.0,
        expect={"x64": (0, ("a",))},
    ),
    Case(
        "idle before timeout kept",
        [pool("x64", idle_timeout=60)],
        runners=[runner("a", IDLE, idle_since=0.0)],
        now=59.0,
        expect={"x64": (0, ())},
    ),
    Case(
        "idle_since missing falls back to state_since",
        [pool("x64", idle_timeout=60)],
        runners=[runner("a", IDLE, since=50.0), runner("b", IDLE, since=0.0)],
        now=100.0,
        expect={"x64": (0, ("b",))},
    ),
    Case(
        "idle runner covering a queued job is kept",
        [pool("x64")],
        queued(1),
        [runner("a", IDLE, idle_since=0.0)],
        expect={"x64": (0, ())},
    ),
    Case(
        "surplus removes oldest idle first, ties by name",
        [pool("x64", max_runners=10)],
        queued(1),
        [
            runner("d", IDLE, idle_since=30.0),
            runner("c", IDLE, idle_since=10.0),
            runner("b", IDLE, idle_since=10.0),
            runner("a", IDLE, idle_since=20.0),
        ],
        expect={"x64": (0, ("b", "c", "a"))},
    ),
    Case(
        "surplus larger than timed-out idle removes only timed-out",
        [pool("x64", max_runners=10)],
        runners=[
            runner("fresh", IDLE, idle_since=990.0),
            runner("old", IDLE, idle_since=0.0),
            runner("boot", BOOTING),
        ],
        expect={"x64": (0, ("old",))},
    ),
    Case(
        "busy and booting never removed even over cap",
        [pool("x64", max_runners=2)],
        runners=[
            runner("b1", BUSY),
            runner("b2", BUSY),
            runner("b3", BUSY),
            runner("boot", BOOTING),
        ],
        expect={"x64": (0, ())},
    ),
    Case(
        "lowered cap removes idle ones within their timeout",
        [pool("x64", max_runners=2, min_idle=3)],
        runners=[
            runner("busy", BUSY),
            runner("i1", IDLE, idle_since=999.0),
            runner("i2", IDLE, idle_since=998.0),
            runner("i3", IDLE, idle_since=997.0),
        ],
        expect={"x64": (0, ("i3", "i2"))},
    ),
    Case(
        "runners already leaving hold the cap but are no excess",
        [pool("x64", max_runners=2, min_idle=2)],
        runners=[
            runner("gone1", RunnerState.DELETING),
            runner("gone2", RunnerState.FINISHED),
            runner("i1", IDLE, idle_since=999.0),
            runner("i2", IDLE, idle_since=998.0),
        ],
        expect={"x64": (0, ())},
    ),
    Case(
        "waiting jobs create nothing",
        [pool("x64")],
        [job(1, state=JobState.WAITING), job(2, state=JobState.WAITING)],
        expect={"x64": (0, ())},
    ),
    Case(
        "in-progress and completed jobs create nothing",
        [pool("x64")],
        [job(1, state=JobState.IN_PROGRESS), job(2, state=JobState.COMPLETED)],
        expect={"x64": (0, ())},
    ),
    Case(
        "unmatched jobs counted and not provisioned",
        [pool("x64")],
        [job(7, ("self-hosted", "arm64")), job(3, ("windows",)), job(5)],
        expect={"x64": (1, ())},
        unmatched=(3, 7),
    ),
    Case(
        "gpu job goes to the gpu pool",
        [pool("x64", X64), pool("gpu", GPU, order=1)],
        [job(1, ("self-hosted", "gpu"))],
        expect={"x64": (0, ()), "gpu": (1, ())},
    ),
    Case(
        "plain job goes to the least specific pool though the gpu pool matches",
        [pool("gpu", GPU, order=0), pool("x64", X64, order=1)],
        [job(1, ("self-hosted", "x64"))],
        expect={"x64": (1, ()), "gpu": (0, ())},
    ),
    Case(
        "labels are case-insensitive",
        [pool("x64", ("Self-Hosted", "Linux", "X64"))],
        [job(1, ("SELF-HOSTED", "x64")), job(2, (" Linux ",))],
        expect={"x64": (2, ())},
    ),
    Case(
        "ties broken by declared order",
        [pool("first", X64, order=0), pool("second", X64, order=1)],
        queued(2),
        expect={"first": (2, ()), "second": (0, ())},
    ),
    Case(
        "jobs for another pool do not count",
        [pool("x64", X64), pool("gpu", GPU, order=1)],
        [job(1, GPU)],
        [runner("idle-x64", IDLE, "x64", idle_since=0.0)],
        expect={"x64": (0, ("idle-x64",)), "gpu": (1, ())},
    ),
    Case(
        "runners of unknown pools are ignored",
        [pool("x64")],
        queued(1),
        [runner("stray", IDLE, "old-pool", idle_since=0.0)],
        expect={"x64": (1, ())},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_table(case: Case) -> None:
    decision = decide(case.pools, case.jobs, case.runners, case.now)
    got = {name: (d.create, d.remove) for name, d in decision.pools.items()}
    assert got == case.expect
    assert list(decision.pools) == [p.name for p in case.pools]
    assert decision.unmatched == case.unmatched
    for name, pool_decision in decision.pools.items():
        assert pool_decision.pool == name
        assert pool_decision.reason


def test_counts_and_reason() -> None:
    decision = decide(
        [pool("x64", max_runners=4)],
        queued(3),
        [runner("b", BOOTING), runner("busy", BUSY), runner("gone", RunnerState.DELETING)],
        now=0.0,
    )
    assert decision.pools["x64"] == PoolDecision(
        pool="x64",
        queued=3,
        busy=1,
        free=1,
        live=3,
        desired=4,
        create=1,
        remove=(),
        reason="3 queued, 1 busy, 1 on the way, 0 idle: "
        "create 1 (cap 4), 1 more wanted but the cap is reached",
    )


def draining(spec: PoolSpec, *names: str) -> PoolSpec:
    """The pool with these runners' instances draining (a spot interruption notice)."""
    return replace(spec, draining=frozenset(names))


DRAINING_CASES = [
    Case(
        "a runner whose instance drains is not free: the queued job gets another",
        [draining(pool("x64"), "d")],
        queued(1),
        [runner("d", IDLE, idle_since=990.0)],
        expect={"x64": (1, ())},
    ),
    Case(
        "a booting runner whose instance drains is not free either",
        [draining(pool("x64"), "d")],
        queued(2),
        [runner("d", BOOTING), runner("b", BOOTING)],
        expect={"x64": (1, ())},
    ),
    Case(
        "it is never scaled down here (the controller removes it, interrupted)",
        [draining(pool("x64", idle_timeout=60), "d")],
        runners=[runner("d", IDLE, idle_since=0.0)],
        expect={"x64": (0, ())},
    ),
    Case(
        "it counts against the cap",
        [draining(pool("x64", max_runners=2), "d")],
        queued(2),
        [runner("d", IDLE, idle_since=990.0)],
        expect={"x64": (1, ())},
    ),
    Case(
        "min_idle is kept with runners that take jobs",
        [draining(pool("x64", min_idle=1), "d")],
        runners=[runner("d", IDLE, idle_since=990.0)],
        expect={"x64": (1, ())},
    ),
    Case(
        "another pool's draining names are none of this one's",
        [draining(pool("gpu", GPU), "d"), pool("x64", order=1)],
        queued(1),
        [runner("d", IDLE, idle_since=990.0)],
        expect={"gpu": (0, ()), "x64": (0, ())},
    ),
]


@pytest.mark.parametrize("case", DRAINING_CASES, ids=[case.id for case in DRAINING_CASES])
def test_runners_whose_instance_drains(case: Case) -> None:
    test_table(case)


def test_the_reason_counts_the_draining_runners() -> None:
    decided = decide(
        [draining(pool("x64"), "d", "gone")],
        queued(1),
        [runner("d", BUSY), runner("gone", RunnerState.GONE)],
        now=0.0,
    ).pools["x64"]
    assert (decided.free, decided.live, decided.draining, decided.create) == (0, 1, 1, 1)
    assert decided.reason.startswith("1 queued, 1 busy, 0 on the way, 0 idle, 1 draining: ")


def test_no_pools() -> None:
    assert decide([], queued(2), [], 0.0) == Decision(
        pools={}, job_pools={1: None, 2: None}, unmatched=(1, 2)
    )


def test_job_pools_cover_queued_and_waiting_only() -> None:
    jobs = [
        job(1),
        job(2, GPU, JobState.WAITING),
        job(3, ("arm64",)),
        job(4, state=JobState.IN_PROGRESS),
        job(5, state=JobState.COMPLETED),
    ]
    decision = decide([pool("x64", X64), pool("gpu", GPU, order=1)], jobs, [], 0.0)
    assert decision.job_pools == {1: "x64", 2: "gpu", 3: None}
    assert decision.unmatched == (3,)
    assert decision.pools["gpu"].create == 0  # the gpu job only waits


def test_duplicate_pool_names_rejected() -> None:
    with pytest.raises(ValueError, match="x64"):
        decide([pool("x64"), pool("x64", GPU)], [], [], 0.0)


def test_removed_runners_no_longer_count_next_cycle() -> None:
    """Acting on a lowered cap (idle -> deleting) does not make the next cycle remove more."""
    p = pool("x64", max_runners=1)
    runners = [runner(f"i{n}", IDLE, idle_since=999.0 - n) for n in range(3)]
    first = decide([p], [], runners, 1000.0).pools["x64"]
    assert first.remove == ("i2", "i1")
    acted = [
        runner(
            r.name,
            RunnerState.DELETING if r.name in first.remove else r.state,
            idle_since=r.idle_since,
        )
        for r in runners
    ]
    second = decide([p], [], acted, 1001.0).pools["x64"]
    assert (second.create, second.remove) == (0, ())


# --- properties ------------------------------------------------------------------------------

UNIVERSE = ("self-hosted", "linux", "x64", "arm64", "gpu", "large")

label_sets = st.frozensets(st.sampled_from(UNIVERSE), min_size=1, max_size=len(UNIVERSE))


@st.composite
def pool_lists(draw: st.DrawFn) -> list[PoolSpec]:
    count = draw(st.integers(min_value=1, max_value=4))
    return [
        PoolSpec(
            name=f"p{i}",
            labels=draw(label_sets),
            max_runners=draw(st.integers(min_value=0, max_value=6)),
            min_idle=draw(st.integers(min_value=0, max_value=3)),
            idle_timeout=draw(st.sampled_from([0.0, 30.0, 60.0, 120.0])),
            order=i,
        )
        for i in range(count)
    ]


@st.composite
def job_lists(draw: st.DrawFn) -> list[Job]:
    specs = draw(
        st.lists(
            st.tuples(
                st.lists(
                    st.sampled_from(UNIVERSE).map(
                        lambda label: label.upper() if len(label) % 2 else label
                    ),
                    max_size=3,
                ),
                st.sampled_from(list(JobState)),
            ),
            max_size=12,
        )
    )
    return [job(i + 1, tuple(labels), state) for i, (labels, state) in enumerate(specs)]


@st.composite
def runner_lists(draw: st.DrawFn, pool_names: list[str]) -> list[Runner]:
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from([*pool_names, "orphan"]),
                st.sampled_from(list(RunnerState)),
                st.integers(min_value=0, max_value=300),
                st.none() | st.integers(min_value=0, max_value=300),
            ),
            max_size=15,
        )
    )
    return [
        runner(
            f"r{i:02d}",
            state,
            pool_name,
            since=float(since),
            idle_since=None if idle is None else float(idle),
        )
        for i, (pool_name, state, since, idle) in enumerate(specs)
    ]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[PoolSpec], list[Job], list[Runner], float]:
    pools = draw(pool_lists())
    jobs = draw(job_lists())
    runners = draw(runner_lists([p.name for p in pools]))
    now = float(draw(st.integers(min_value=0, max_value=400)))
    return pools, jobs, runners, now


Scenario = tuple[list[PoolSpec], list[Job], list[Runner], float]


def _since(r: Runner) -> float:
    return r.idle_since if r.idle_since is not None else r.state_since


@settings(max_examples=examples(300), deadline=None)
@given(scenarios())
def test_pool_invariants(scenario: Scenario) -> None:
    pools, jobs, runners, now = scenario
    decision = decide(pools, jobs, runners, now)
    assert list(decision.pools) == [p.name for p in pools]
    for p in pools:
        d = decision.pools[p.name]
        mine = [r for r in runners if r.pool == p.name]
        by_name = {r.name: r for r in mine}
        live = sum(r.state.live for r in mine)
        free = sum(r.state.free for r in mine)
        staying = sum(
            r.state.live and r.state not in (RunnerState.FINISHED, RunnerState.DELETING)
            for r in mine
        )
        over = staying > p.max_runners
        needed = d.queued + p.min_idle
        assert (d.live, d.free) == (live, free)
        assert d.busy == sum(r.state is RunnerState.BUSY for r in mine)
        assert d.desired == min(p.max_runners, d.busy + d.queued + p.min_idle)

        # Never above the cap; nothing created when already at or over it.
        if live <= p.max_runners:
            assert live + d.create <= p.max_runners
        else:
            assert d.create == 0
        # Never more than needed.
        assert d.create <= max(0, needed - free)
        assert not (d.create and d.remove)

        # Only this pool's idle runners are removed, each once, idle longest first.
        assert len(set(d.remove)) == len(d.remove)
        assert all(name in by_name and by_name[name].state is IDLE for name in d.remove)
        kept_idle = [r for r in mine if r.state is IDLE and r.name not in d.remove]
        for name in d.remove:
            removed = by_name[name]
            assert all((_since(removed), name) < (_since(k), k.name) for k in kept_idle)

        free_after = free + d.create - len(d.remove)
        if not over:
            # No removal eats into what queued jobs and min_idle need, nor before the timeout.
            assert not d.remove or free_after >= needed
            assert all(now - _since(by_name[name]) >= p.idle_timeout for name in d.remove)
            # With capacity, every queued job has a runner on the way, and min_idle is kept.
            if p.max_runners - live >= needed - free:
                assert free + d.create >= needed
            assert free_after >= min(needed, free + max(0, p.max_runners - live))
            assert free_after >= min(p.min_idle, free + max(0, p.max_runners - live))
        else:
            # Over the cap: remove no more than it takes to get down to it.
            assert len(d.remove) <= max(staying - p.max_runners, free - needed)
            assert free_after >= min(needed, p.max_runners - d.busy)


@settings(max_examples=examples(300), deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_deterministic_and_order_independent(scenario: Scenario, rnd: random.Random) -> None:
    pools, jobs, runners, now = scenario
    first = decide(pools, jobs, runners, now)
    assert decide(pools, jobs, runners, now) == first
    shuffled_jobs, shuffled_runners = list(jobs), list(runners)
    rnd.shuffle(shuffled_jobs)
    rnd.shuffle(shuffled_runners)
    assert decide(pools, shuffled_jobs, shuffled_runners, now) == first


@settings(max_examples=examples(300), deadline=None)
@given(scenarios())
def test_job_routing(scenario: Scenario) -> None:
    pools, jobs, runners, now = scenario
    decision = decide(pools, jobs, runners, now)
    routed = [j for j in jobs if j.state in (JobState.QUEUED, JobState.WAITING)]
    expected: dict[int, str | None] = {}
    for j in routed:
        chosen = match_pool(pools, j.labels)
        expected[j.id] = chosen.name if chosen else None
    assert decision.job_pools == expected
    queued_jobs = [j for j in jobs if j.state is JobState.QUEUED]
    assert decision.unmatched == tuple(sorted(j.id for j in queued_jobs if expected[j.id] is None))
    for p in pools:
        assert decision.pools[p.name].queued == sum(expected[j.id] == p.name for j in queued_jobs)
    # A matched job is served by its pool: every chosen pool's labels hold the job's labels.
    for j in routed:
        name = expected[j.id]
        if name is not None:
            assert next(p for p in pools if p.name == name).serves(j.labels)


def test_a_busy_runner_whose_job_is_not_known_yet_has_taken_a_queued_one() -> None:
    # GitHub's runner list showed it busy before the job's in_progress was observed.
    runners = [runner("a", BUSY, job_id=0), runner("b", BOOTING)]
    decision = decide([pool("x64")], queued(3), runners, now=0.0)
    decided = decision.pools["x64"]
    assert decided.queued == 2
    assert decided.create == 1  # not 2: one of the three jobs is already running on "a"
    known = [runner("a", BUSY), runner("b", BOOTING)]
    assert decide([pool("x64")], queued(3), known, now=0.0).pools["x64"].create == 2


# --- the whole decision: where new runners go, what is reaped, what the backoff holds back ----

REPO_A, REPO_B, ORG = Target("repo", "o/a"), Target("repo", "o/b"), Target("org", "o")


def job_in(job_id: int, repo: str) -> Job:
    return Job(id=job_id, repo=repo, labels=X64, state=JobState.QUEUED, created_at=0.0)


def runner_at(name: str, state: RunnerState, target: Target) -> Runner:
    return replace(runner(name, state, idle_since=0.0), target=target.key)


@dataclass
class TargetCase:
    id: str
    targets: list[Target]
    jobs: list[Job]
    runners: list[Runner] = field(default_factory=list)
    max_runners: int = 4
    create_on: tuple[str, ...] = ()


TARGET_CASES = [
    TargetCase("no targets given: no placement", [], [job_in(1, "o/a")]),
    TargetCase(
        "one target takes them all, whatever the repo",
        [REPO_B],
        [job_in(1, "o/a"), job_in(2, "o/a")],
        create_on=(REPO_B.key, REPO_B.key),
    ),
    TargetCase(
        "each runner where its job is, most demand first, ties in config order",
        [REPO_B, REPO_A],
        [job_in(1, "o/a"), job_in(2, "o/b"), job_in(3, "o/a")],
        create_on=(REPO_A.key, REPO_B.key, REPO_A.key),
    ),
    TargetCase(
        "a free runner already serves its target",
        [REPO_A, REPO_B],
        [job_in(1, "o/a"), job_in(2, "o/b")],
        [runner_at("booting-a", BOOTING, REPO_A)],
        create_on=(REPO_B.key,),
    ),
    TargetCase(
        "a busy runner serves no queued job",
        [REPO_A, REPO_B],
        [job_in(1, "o/b")],
        [runner_at("busy-a", BUSY, REPO_A)],
        create_on=(REPO_B.key,),
    ),
    TargetCase(
        "the first target that covers the repo counts",
        [ORG, REPO_A],
        [job_in(1, "o/a"), job_in(2, "o/a")],
        create_on=(ORG.key, ORG.key),
    ),
    TargetCase(
        "no demand anywhere (min_idle, or the cap): config order",
        [REPO_B, REPO_A],
        [job_in(1, "x/y")],
        create_on=(REPO_B.key,),
    ),
    TargetCase(
        "under the cap: the most demand first",
        [REPO_A, REPO_B],
        [job_in(1, "o/b"), job_in(2, "o/b"), job_in(3, "o/a")],
        max_runners=2,
        create_on=(REPO_B.key, REPO_A.key),
    ),
]


@pytest.mark.parametrize("case", TARGET_CASES, ids=[case.id for case in TARGET_CASES])
def test_where_new_runners_register(case: TargetCase) -> None:
    p = PoolSpec(name="x64", labels=normalize_labels(X64), max_runners=case.max_runners)
    decided = decide([p], case.jobs, case.runners, 0.0, targets=case.targets).pools["x64"]
    assert decided.create_on == case.create_on
    if case.targets:
        assert len(decided.create_on) == decided.create


FINISHED, DELETING = RunnerState.FINISHED, RunnerState.DELETING


@dataclass
class ReapCase:
    id: str
    runners: list[Runner]
    jobs: list[Job] = field(default_factory=list)
    max_runners: int = 4
    #: (create, reap)
    expect: tuple[int, tuple[str, ...]] = (0, ())


REAP_CASES = [
    ReapCase("nothing finished", [runner("a", BUSY)]),
    ReapCase(
        "every finished runner, oldest first",
        [
            replace(runner("late", FINISHED), created_at=20.0),
            replace(runner("early", FINISHED), created_at=10.0),
            runner("busy", BUSY),
        ],
        expect=(0, ("early", "late")),
    ),
    ReapCase(
        "reaped ones hold their slot under the cap in the cycle that reaps them",
        [runner("f1", FINISHED), runner("f2", FINISHED), runner("b", BUSY)],
        queued(3),
        max_runners=3,
        expect=(0, ("f1", "f2")),
    ),
    ReapCase("deleting ones are on their way already", [runner("d", DELETING)]),
    ReapCase("another pool's are not this pool's", [runner("f", FINISHED, "other")]),
]


@pytest.mark.parametrize("case", REAP_CASES, ids=[case.id for case in REAP_CASES])
def test_finished_runners_are_reaped(case: ReapCase) -> None:
    decided = decide([pool("x64", max_runners=case.max_runners)], case.jobs, case.runners, 0.0)
    assert (decided.pools["x64"].create, decided.pools["x64"].reap) == case.expect


@dataclass
class BackoffCase:
    id: str
    backoff: dict[str, float]
    runners: list[Runner] = field(default_factory=list)
    queued: int = 2
    now: float = 100.0
    #: (create, held_back, remove)
    expect: tuple[int, int, tuple[str, ...]] = (0, 0, ())
    reason: str = ""


BACKOFF_CASES = [
    BackoffCase("no backoff", {}, expect=(2, 0, ())),
    BackoffCase(
        "backing off: held back, and said why",
        {"x64": 130.0},
        expect=(0, 2, ()),
        reason="held back by the failure backoff for 30s more",
    ),
    BackoffCase("the backoff is over", {"x64": 100.0}, expect=(2, 0, ())),
    BackoffCase("another pool's backoff", {"gpu": 130.0}, expect=(2, 0, ())),
    BackoffCase(
        "removals go on",
        {"x64": 130.0},
        [runner(f"i{n}", IDLE, idle_since=float(n)) for n in range(3)],
        queued=0,
        expect=(0, 0, ("i0", "i1", "i2")),
    ),
    BackoffCase("nothing to create: nothing held back", {"x64": 130.0}, queued=0),
]


@pytest.mark.parametrize("case", BACKOFF_CASES, ids=[case.id for case in BACKOFF_CASES])
def test_the_failure_backoff_holds_creations_back(case: BackoffCase) -> None:
    decided = decide(
        [pool("x64")],
        queued(case.queued),
        case.runners,
        case.now,
        targets=[REPO_A],
        backoff=case.backoff,
    ).pools["x64"]
    assert (decided.create, decided.held_back, decided.remove) == case.expect
    assert len(decided.create_on) == decided.create
    assert case.reason in decided.reason


#: 2026-01-01 20:54:30 UTC: 3h 05m 30s before the next day.
EVENING = 1_767_225_600.0 + 20 * 3600 + 54 * 60 + 30


@dataclass
class BudgetCase:
    id: str
    #: The pool's budget.per_day (None: no cap), and what it spent today.
    budget: float | None
    spent: dict[str, float]
    runners: list[Runner] = field(default_factory=list)
    queued: int = 2
    min_idle: int = 0
    backoff: dict[str, float] = field(default_factory=dict)
    #: (create, held_back, held_back_by, remove)
    expect: tuple[int, int, str, tuple[str, ...]] = (0, 0, "", ())
    reason: str = ""


BUDGET_CASES = [
    BudgetCase("no budget: no cap", None, {"x64": 1e9}, expect=(2, 0, "", ())),
    BudgetCase("below the budget", 50.0, {"x64": 49.99}, expect=(2, 0, "", ())),
    BudgetCase("nothing spent yet (no figure)", 50.0, {}, expect=(2, 0, "", ())),
    BudgetCase(
        "reached: held back, and said why and until when",
        50.0,
        {"x64": 50.0},
        expect=(0, 2, "budget", ()),
        reason="held back by the budget: $50.00 spent today of $50.00 a day, until "
        "00:00 UTC (in 3h 05m)",
    ),
    BudgetCase("another pool's spend", 50.0, {"gpu": 80.0}, expect=(2, 0, "", ())),
    BudgetCase(
        "min_idle is held back too",
        50.0,
        {"x64": 51.0},
        queued=0,
        min_idle=1,
        expect=(0, 1, "budget", ()),
    ),
    BudgetCase(
        "running runners stay; idle ones still time out",
        50.0,
        {"x64": 60.0},
        [runner("busy", BUSY), *(runner(f"i{n}", IDLE, idle_since=float(n)) for n in range(2))],
        queued=0,
        expect=(0, 0, "", ("i0", "i1")),
    ),
    BudgetCase(
        "the budget first when the failure backoff holds them too",
        50.0,
        {"x64": 60.0},
        backoff={"x64": EVENING + 30},
        expect=(0, 2, "budget", ()),
    ),
    BudgetCase(
        "the failure backoff alone",
        50.0,
        {"x64": 10.0},
        backoff={"x64": EVENING + 30},
        expect=(0, 2, "failure_backoff", ()),
        reason="held back by the failure backoff for 30s more",
    ),
]


@pytest.mark.parametrize("case", BUDGET_CASES, ids=[case.id for case in BUDGET_CASES])
def test_a_spent_budget_holds_creations_back_until_the_next_day(case: BudgetCase) -> None:
    spec = replace(pool("x64", min_idle=case.min_idle), budget_per_day=case.budget)
    decided = decide(
        [spec, pool("gpu", GPU)],
        queued(case.queued),
        case.runners,
        EVENING,
        targets=[REPO_A],
        backoff=case.backoff,
        spent=case.spent,
    ).pools["x64"]
    got = (decided.create, decided.held_back, decided.held_back_by, decided.remove)
    assert got == case.expect
    assert len(decided.create_on) == decided.create
    assert case.reason in decided.reason


@settings(max_examples=examples(300), deadline=None)
@given(scenarios(), st.lists(st.sampled_from([REPO_A, REPO_B, ORG]), unique=True, max_size=3))
def test_the_whole_decision(scenario: Scenario, targets: list[Target]) -> None:
    pools, jobs, runners, now = scenario
    backoff = {pools[0].name: now + 1}
    decision = decide(pools, jobs, runners, now, targets=targets, backoff=backoff)
    plain = decide(pools, jobs, runners, now)
    keys = {target.key for target in targets}
    for p in pools:
        d, before = decision.pools[p.name], plain.pools[p.name]
        assert len(d.create_on) == (d.create if targets else 0)
        assert set(d.create_on) <= keys
        assert d.reap == tuple(
            r.name
            for r in sorted(runners, key=lambda r: (r.created_at, r.name))
            if r.pool == p.name and r.state is FINISHED
        )
        assert d.remove == before.remove
        if p.name in backoff:
            assert (d.create, d.held_back) == (0, before.create)
        else:
            assert (d.create, d.held_back) == (before.create, 0)
