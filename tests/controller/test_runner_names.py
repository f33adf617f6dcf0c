"""Runner names: a random part wide enough never to repeat in practice, and a repeat that
happens anyway costs a retry with a fresh name, never the decision that named it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from runnerscale.config.schema import RUNNER_PREFIX_PATTERN
from runnerscale.controller.actions import NAME_ATTEMPTS, Actions, random_suffix
from runnerscale.model import RunnerState
from runnerscale.protocols import RunnerNameTaken
from tests.controller.conftest import PREFIX, MakeRig, Rig

#: GitHub's limit on a runner's name.
GITHUB_NAME_MAX = 64


def suffixes(*values: str) -> Callable[[], str]:
    """A suffix function that hands out ``values`` in turn (then fails the test)."""
    drawn: Iterator[str] = iter(values)
    return lambda: next(drawn)


def test_the_longest_prefix_and_a_suffix_make_a_name_github_takes() -> None:
    longest = "a" * int(re.findall(r"\{0,(\d+)\}", RUNNER_PREFIX_PATTERN)[0]) + "a"
    assert re.fullmatch(RUNNER_PREFIX_PATTERN, longest)
    assert Actions.__dataclass_fields__["suffix"].default is random_suffix
    names = {random_suffix() for _ in range(1000)}
    assert len(names) == 1000
    for suffix in names:
        assert re.fullmatch(r"[0-9a-f]{16}", suffix)  # 64 random bits
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", longest + suffix)
        assert len(longest + suffix) <= GITHUB_NAME_MAX


async def test_a_suffix_drawn_twice_in_one_decision_is_drawn_again(make_world: MakeRig) -> None:
    world = make_world(max_runners=3)
    world.controller.actions.suffix = suffixes("aaaa", "aaaa", "bbbb", "cccc")
    for job_id in (1, 2):
        await world.queue(job_id)
    await world.reconcile()

    # Both runners were first named "aaaa": the store named that name, and both were named
    # again (which of the two keeps it is no matter), in one retry.
    assert sorted(world.states()) == [f"{PREFIX}bbbb", f"{PREFIX}cccc"]
    assert set(world.states().values()) == {RunnerState.BOOTING}
    assert world.controller.errors["reconcile"] == 0


async def test_a_name_the_store_holds_is_drawn_again(world: Rig) -> None:
    world.controller.actions.suffix = suffixes("aaaa", "aaaa", "bbbb")
    first = await world.booting_runner()
    assert first == f"{PREFIX}aaaa"
    before = world.runner(first)

    # Two queued jobs (the booting runner takes one): the decision draws "aaaa" again for
    # the other's runner; that name is taken, "bbbb" is not.
    for job_id in (1, 2):
        await world.queue(job_id)
    await world.reconcile()

    assert sorted(world.states()) == [f"{PREFIX}aaaa", f"{PREFIX}bbbb"]
    assert world.runner(first) == before  # the runner holding the name is untouched
    assert world.runner(f"{PREFIX}bbbb").state is RunnerState.BOOTING
    assert world.journal.ops(subject=f"{PREFIX}bbbb")[0] == "pending"


async def test_a_manual_scale_up_names_again_too(world: Rig) -> None:
    world.controller.actions.suffix = suffixes("aaaa", "aaaa", "bbbb")
    first = await world.booting_runner()
    second = await world.booting_runner()
    assert (first, second) == (f"{PREFIX}aaaa", f"{PREFIX}bbbb")


async def test_a_name_taken_at_every_attempt_fails_the_write_and_writes_nothing(
    world: Rig,
) -> None:
    world.controller.actions.suffix = suffixes("aaaa", *["aaaa"] * NAME_ATTEMPTS)
    await world.booting_runner()
    for job_id in (1, 2):
        await world.queue(job_id)

    with pytest.raises(RunnerNameTaken, match="already exists") as raised:
        await world.reconcile()

    assert raised.value.names == {f"{PREFIX}aaaa"}
    assert list(world.states()) == [f"{PREFIX}aaaa"]  # nothing else was written
