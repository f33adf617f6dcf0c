"""The scaler for a pool over several hosts (``PoolSpec.groups``): room counted per node group,
runners on down nodes neither free nor holding a live slot, jobs only a down node could take
reported. Table cases for each rule, property tests for the invariants."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerscale.model import (
    Job,
    LabelGroup,
    PoolSpec,
    Runner,
    RunnerState,
    explain_unmatched,
    match_pool,
    normalize_labels,
)
from runnerscale.scaler import decide, manual_runners
from tests.examples import examples
from tests.test_scaler import X64, job, pool, runner

IDLE, BUSY, BOOTING = RunnerState.IDLE, RunnerState.BUSY, RunnerState.BOOTING
PLAIN: frozenset[str] = frozenset()
DEPLOY = frozenset({"deploy"})
DEPLOY_JOB = (*X64, "deploy")


def vps(
    plain: int = 4,
    deploy: int = 2,
    *,
    max_runners: int = 12,
    min_idle: int = 0,
    unreachable: tuple[str, ...] = (),
    down: tuple[str, ...] = (),
    order: int = 0,
) -> PoolSpec:
    """A pool over plain nodes with ``plain`` slots and deploy nodes with ``deploy`` slots;
    ``down``: deploy nodes that are down."""
    return replace(
        pool("vps", X64, max_runners, min_idle=min_idle, order=order),
        groups=(LabelGroup(PLAIN, plain), LabelGroup(DEPLOY, deploy, down)),
        unreachable=frozenset(unreachable),
    )


def on(
    name: str, state: RunnerState, labels: tuple[str, ...] = (), **changes: float | int | None
) -> Runner:
    """A runner of pool vps registered with ``labels`` (none: the pool's)."""
    return replace(runner(name, state, "vps", **changes), labels=labels)  # type: ignore[arg-type]


def plain_jobs(count: int, first: int = 1) -> list[Job]:
    return [job(first + i) for i in range(count)]


def deploy_jobs(count: int, first: int = 101) -> list[Job]:
    return [job(first + i, DEPLOY_JOB) for i in range(count)]


@dataclass
class Case:
    id: str
    pool: PoolSpec
    jobs: list[Job] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    #: The extra labels of each new runner, in order.
    creates: tuple[frozenset[str], ...] = ()
    remove: tuple[str, ...] = ()
    unmatched: tuple[int, ...] = ()
    #: Words the reason says.
    says: tuple[str, ...] = ()
    now: float = 1000.0


CASES = [
    Case("plain jobs go to plain nodes", vps(), plain_jobs(3), creates=(PLAIN,) * 3),
    Case(
        "plain jobs spill onto deploy nodes once the plain ones are full",
        vps(plain=2),
        plain_jobs(3),
        creates=(PLAIN, PLAIN, DEPLOY),
        says=("create 3 (cap 12; 1 with deploy)",),
    ),
    Case(
        "a deploy job gets a deploy runner",
        vps(),
        [*plain_jobs(1), *deploy_jobs(1)],
        creates=(DEPLOY, PLAIN),
    ),
    Case(
        "deploy slots are kept for deploy jobs: a plain job waits for a plain slot",
        vps(plain=1, deploy=1),
        [*plain_jobs(2), *deploy_jobs(1)],
        creates=(DEPLOY, PLAIN),
        says=("1 waits for a free node slot",),
    ),
    Case(
        "deploy jobs wait for deploy slots, and say so",
        vps(deploy=1),
        deploy_jobs(3),
        creates=(DEPLOY,),
        says=("2 wait for a free node slot (2 need deploy)",),
    ),
    Case(
        "a job only a down node could take is unmatched",
        vps(deploy=0, down=("10.0.0.12:2222",)),
        [*plain_jobs(1), *deploy_jobs(1)],
        creates=(PLAIN,),
        unmatched=(101,),
    ),
    Case(
        "runners on down nodes count against max_runners",
        vps(max_runners=3, deploy=0, unreachable=("d1", "d2")),
        plain_jobs(2),
        [on("d1", BUSY, DEPLOY_JOB), on("d2", IDLE, DEPLOY_JOB, idle_since=0.0)],
        creates=(PLAIN,),
        says=("2 on down nodes", "1 more wanted but the cap is reached"),
    ),
    Case(
        "an idle runner on a down node is not free, and is not removed",
        vps(unreachable=("away",)),
        plain_jobs(1),
        [on("away", IDLE, idle_since=0.0)],
        creates=(PLAIN,),
    ),
    Case(
        "a runner whose instance drains holds its slot but is not free, nor removed",
        replace(vps(plain=2, deploy=0), draining=frozenset({"d"})),
        plain_jobs(1),
        [on("d", IDLE, idle_since=0.0)],
        creates=(PLAIN,),
        says=("1 draining",),
    ),
    Case(
        "a runner whose instance drains leaves no slot to a job that needs one",
        replace(vps(plain=1, deploy=0), draining=frozenset({"d"})),
        plain_jobs(1),
        [on("d", IDLE, idle_since=0.0)],
        says=("1 waits for a free node slot",),
    ),
    Case(
        "runners on a down node hold no slot of a live group",
        vps(plain=2, unreachable=("a1", "a2")),
        plain_jobs(2),
        [on("a1", BUSY), on("a2", BUSY)],
        creates=(PLAIN, PLAIN),
    ),
    Case(
        "runners on live nodes hold their group's slots",
        vps(plain=2, deploy=1),
        plain_jobs(2),
        [on("p1", BUSY), on("p2", BUSY, X64)],
        creates=(DEPLOY,),
        says=("1 waits for a free node slot",),
    ),
    Case(
        "a plain job takes a free deploy runner rather than waiting",
        vps(plain=0),
        plain_jobs(1),
        [on("d", IDLE, DEPLOY_JOB, idle_since=0.0)],
    ),
    Case(
        "a free plain runner cannot take a deploy job, and is not removed while the pool creates",
        vps(),
        deploy_jobs(1),
        [on("p", IDLE, idle_since=0.0)],
        creates=(DEPLOY,),
        says=("create 1",),
    ),
    Case(
        "an idle plain runner no job can take goes after its timeout",
        vps(deploy=0),
        deploy_jobs(1),
        [on("p", IDLE, idle_since=0.0)],
        remove=("p",),
        unmatched=(101,),
    ),
    Case(
        "the most constrained job picks first: the deploy runner is the deploy job's",
        vps(plain=0, deploy=1),
        [*plain_jobs(1), *deploy_jobs(1)],
        [on("d", BOOTING, DEPLOY_JOB)],
        says=("1 waits for a free node slot",),
    ),
    Case(
        "min_idle goes to the group with the most free slots",
        vps(plain=1, deploy=3, min_idle=2),
        creates=(DEPLOY, DEPLOY),
    ),
    Case(
        "min_idle: on a tie, the narrowest group",
        vps(plain=2, deploy=2, min_idle=1),
        creates=(PLAIN,),
    ),
    Case(
        "min_idle counts the free runners no job takes",
        vps(min_idle=1),
        plain_jobs(1),
        [on("p", IDLE, idle_since=0.0), on("q", IDLE, idle_since=0.0)],
        says=("enough, keeping min_idle 1",),
    ),
    Case(
        "the cap binds over all groups",
        vps(max_runners=2),
        [*plain_jobs(2), *deploy_jobs(1)],
        creates=(DEPLOY, PLAIN),
        says=("1 more wanted but the cap is reached",),
    ),
    Case(
        "a busy runner whose job is not known yet took a job it covers",
        vps(),
        [*plain_jobs(1), *deploy_jobs(1)],
        [on("b", BUSY, job_id=0)],
        creates=(DEPLOY,),
    ),
    Case(
        "every node down: nothing is created and each job is reported",
        replace(
            vps(plain=0, deploy=0),
            groups=(LabelGroup(PLAIN, 0, ("n1",)), LabelGroup(DEPLOY, 0, ("n2",))),
        ),
        [*plain_jobs(1), *deploy_jobs(1)],
        unmatched=(1, 101),
        says=("nothing to do; no node is up (down: n1, n2)",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_table(case: Case) -> None:
    decision = decide([case.pool], case.jobs, case.runners, case.now)
    decided = decision.pools["vps"]
    assert decided.create_labels == case.creates
    assert decided.create == len(case.creates)
    assert decided.remove == case.remove
    assert decision.unmatched == case.unmatched
    for words in case.says:
        assert words in decided.reason


def test_the_counts_of_a_pool_over_several_hosts() -> None:
    decided = decide(
        [vps(plain=1, deploy=1, unreachable=("away",))],
        [*plain_jobs(2), *deploy_jobs(1)],
        [on("away", BUSY), on("p", BUSY)],
        now=0.0,
    ).pools["vps"]
    assert (decided.queued, decided.busy, decided.free, decided.live) == (3, 1, 0, 2)
    assert decided.unreachable == 1
    assert decided.reason == (
        "3 queued, 1 busy, 0 on the way, 0 idle, 1 on down nodes: "
        "create 1 (cap 12; 1 with deploy); 2 wait for a free node slot"
    )


def test_an_ordinary_pool_names_no_group() -> None:
    decided = decide([pool("x64")], plain_jobs(2), [], 0.0).pools["x64"]
    assert (decided.create, decided.create_labels, decided.unreachable) == (2, (), 0)


def test_the_failure_backoff_holds_the_groups_back_too() -> None:
    decided = decide([vps()], deploy_jobs(1), [], 0.0, backoff={"vps": 10.0}).pools["vps"]
    assert (decided.create, decided.create_labels, decided.held_back) == (0, (), 1)


def test_a_runner_on_a_down_node_is_never_removed() -> None:
    """Not by its idle timeout, nor to get down to a lowered cap (its node cannot be asked)."""
    runners = [on("away", IDLE, idle_since=0.0), on("here", IDLE, idle_since=10.0)]
    decided = decide([vps(max_runners=0, unreachable=("away",))], [], runners, 1000.0)
    assert decided.pools["vps"].remove == ("here",)


def test_routing_to_a_pool_over_several_hosts() -> None:
    """A job goes to the pool (ordinary or over hosts) whose runners for it have the fewest
    labels beyond the job's, then the first declared."""
    plain_pool = pool("x64", X64, order=0)
    fleet = vps(order=1)
    assert match_pool([plain_pool, fleet], X64) is plain_pool
    assert match_pool([plain_pool, fleet], DEPLOY_JOB) is fleet
    assert match_pool([replace(fleet, order=-1), plain_pool], X64).name == "vps"  # type: ignore[union-attr]
    assert fleet.extra_labels(("self-hosted",)) == 2
    assert fleet.extra_labels(DEPLOY_JOB) == 0
    assert not vps(deploy=0).serves(DEPLOY_JOB)
    assert not replace(fleet, ready=False).serves(X64)


@pytest.mark.parametrize(
    ("spec", "labels", "reason"),
    [
        (
            vps(deploy=0, down=("10.0.0.12:2222",)),
            DEPLOY_JOB,
            "pool 'vps': no live node offers deploy (down: 10.0.0.12:2222)",
        ),
        (
            replace(vps(), groups=(LabelGroup(PLAIN, 2), LabelGroup(DEPLOY, 0))),
            ("linux", "DEPLOY"),
            "pool 'vps': no live node offers deploy",
        ),
        (
            replace(vps(), groups=(LabelGroup(PLAIN, 0, ("n1", "n3")), LabelGroup(DEPLOY, 0))),
            X64,
            "pool 'vps': no node is up (down: n1, n3)",
        ),
        (
            replace(vps(), groups=(LabelGroup(DEPLOY, 1), LabelGroup(frozenset({"gpu"}), 1))),
            (*X64, "deploy", "gpu"),
            "pool 'vps': no live node offers deploy, gpu",
        ),
        (vps(), (*X64, "arm64"), "it needs arm64, but every pool here runs on x64"),
        (vps(), (*X64, "staging"), "closest pool 'vps' lacks: staging"),
        (vps(), DEPLOY_JOB, "pool 'vps' serves it"),
    ],
)
def test_why_a_job_is_unmatched(spec: PoolSpec, labels: tuple[str, ...], reason: str) -> None:
    assert explain_unmatched([spec], labels) == reason


# ---------------------------------------------------------------------------- properties

EXTRAS = ("deploy", "gpu", "big")


@st.composite
def fleets(draw: st.DrawFn) -> tuple[PoolSpec, list[Job], list[Runner], float]:
    """A pool over groups of nodes, its runners (some on down nodes, some of no group any
    more) and queued jobs asking for any of the pool's and the groups' labels."""
    extra_sets = draw(
        st.lists(
            st.frozensets(st.sampled_from(EXTRAS), max_size=2), min_size=1, max_size=4, unique=True
        )
    )
    groups = tuple(
        LabelGroup(
            extras,
            draw(st.integers(min_value=0, max_value=4)),
            tuple(draw(st.lists(st.sampled_from(["n1", "n2"]), max_size=1))),
        )
        for extras in extra_sets
    )
    spec = PoolSpec(
        name="vps",
        labels=normalize_labels(X64),
        max_runners=draw(st.integers(min_value=0, max_value=10)),
        min_idle=draw(st.integers(min_value=0, max_value=3)),
        idle_timeout=draw(st.sampled_from([0.0, 60.0])),
        groups=groups,
    )
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(list(RunnerState)),
                st.frozensets(st.sampled_from(EXTRAS), max_size=2),
                st.booleans(),
                st.integers(min_value=0, max_value=300),
                st.booleans(),
            ),
            max_size=12,
        )
    )
    runners = [
        on(
            f"r{i:02d}",
            state,
            (*X64, *sorted(extras)) if extras or labelled else (),
            idle_since=float(since),
            job_id=0 if state is BUSY and i % 3 == 0 else None,
        )
        for i, (state, extras, labelled, since, _) in enumerate(specs)
    ]
    unreachable = frozenset(r.name for r, spec_ in zip(runners, specs, strict=True) if spec_[4])
    jobs = [
        job(i + 1, (*draw(st.sampled_from([(), ("linux",), X64])), *sorted(extras)))
        for i, extras in enumerate(
            draw(st.lists(st.frozensets(st.sampled_from(EXTRAS), max_size=2), max_size=10))
        )
    ]
    now = float(draw(st.integers(min_value=0, max_value=400)))
    return replace(spec, unreachable=unreachable), jobs, runners, now


Fleet = tuple[PoolSpec, list[Job], list[Runner], float]


def group_of(spec: PoolSpec, runner: Runner) -> frozenset[str]:
    return normalize_labels(runner.labels) - spec.labels


@settings(max_examples=examples(300), deadline=None)
@given(fleets())
def test_a_pool_over_several_hosts_keeps_its_limits(fleet: Fleet) -> None:
    spec, jobs, runners, now = fleet
    decided = decide([spec], jobs, runners, now).pools["vps"]
    live = sum(r.state.live for r in runners)
    assert len(decided.create_labels) == decided.create
    # Never above max_runners (runners on down nodes count).
    assert decided.create <= max(0, spec.max_runners - live)
    assert not (decided.create and decided.remove)
    for group in spec.groups or ():
        made = decided.create_labels.count(group.extra_labels)
        if not made:
            continue
        # Only in live groups, and never more runners in a group than its slots.
        assert group.live
        held = sum(
            r.state.live
            and r.name not in spec.unreachable
            and group_of(spec, r) == group.extra_labels
            for r in runners
        )
        assert held + made <= group.slots
    if not spec.min_idle:
        # A new runner only where a queued job of the pool is covered by its group's labels.
        for labels in set(decided.create_labels):
            covered = [
                j
                for j in jobs
                if normalize_labels(j.labels) <= spec.labels | labels and spec.serves(j.labels)
            ]
            assert decided.create_labels.count(labels) <= len(covered)
    # Removals: idle runners of live nodes only.
    by_name = {r.name: r for r in runners}
    for name in decided.remove:
        assert by_name[name].state is IDLE
        assert name not in spec.unreachable


@settings(max_examples=examples(300), deadline=None)
@given(fleets(), st.randoms(use_true_random=False))
def test_a_pool_over_several_hosts_is_decided_deterministically(
    fleet: Fleet, rnd: random.Random
) -> None:
    spec, jobs, runners, now = fleet
    first = decide([spec], jobs, runners, now)
    shuffled_jobs, shuffled_runners = list(jobs), list(runners)
    rnd.shuffle(shuffled_jobs)
    rnd.shuffle(shuffled_runners)
    assert decide([spec], shuffled_jobs, shuffled_runners, now) == first
    # A job is routed to the pool only when a live group covers it; otherwise it is reported.
    for j in jobs:
        covered = bool(spec.covering(j.labels)) and bool(normalize_labels(j.labels))
        assert (first.job_pools[j.id] == "vps") == covered
        assert (j.id in first.unmatched) == (not covered)
        if not covered:
            assert "serves it" not in explain_unmatched([spec], j.labels)


def test_runners_asked_for_by_hand_go_where_most_slots_are_free_up_to_cap_and_slots() -> None:
    # plain: 4 slots, one held by a busy runner; deploy: 2 slots.
    held = [on("a", BUSY)]
    assert manual_runners(vps(), held, 4) == (PLAIN, PLAIN, DEPLOY, PLAIN)
    assert manual_runners(vps(), held, 9) == (PLAIN, PLAIN, DEPLOY, PLAIN, DEPLOY)
    # The cap counts every live runner, those on down nodes too (they hold no slot).
    assert manual_runners(vps(max_runners=3), [*held, on("b", IDLE)], 5) == (PLAIN,)
    away = vps(max_runners=3, unreachable=("b",))
    assert manual_runners(away, [*held, on("b", IDLE)], 5) == (PLAIN,)
    assert manual_runners(vps(plain=0, deploy=0), [], 2) == ()
    # An ordinary pool: up to its cap, none of their own.
    assert manual_runners(pool("x64", X64, 3), [runner("c", IDLE)], 5) == (PLAIN, PLAIN)
