"""Jobs whose runner died mid-job: recorded, and re-run once where the pool asks for it.

How runnerscale knows of such a loss, two ways. GitHub fails the job ("The self-hosted runner:
NAME lost communication with the server") only in the job's check-run annotations; the REST job
and the ``workflow_job`` webhook say no more than ``conclusion: failure``.

- What runnerscale sees itself: when one of its runners dies while busy (its instance exits
  with an error, or vanishes from the backend), the job it was running is recorded as lost,
  with why (:func:`record_loss`).
- What GitHub says: a job of one of its runners (by the pool's name prefix) that ended
  ``failure`` without a loss recorded is examined once, in a pool that re-runs lost jobs: its
  annotations are read (one call), and GitHub's words for a lost runner
  (:data:`LOST_RUNNER_WORDS`) record the loss. This catches the deaths runnerscale cannot see:
  a runner that died while the daemon was down (its exit code is gone), one whose job's
  ``in_progress`` webhook was lost (runnerscale thought it idle), one whose job GitHub failed
  before runnerscale saw it die and removed it as done.

When a lost job is seen completed with conclusion ``failure``, and the dead runner's pool has
``rerun_lost_jobs``, :class:`Reruns` asks GitHub to re-run it; GitHub queues a new attempt
under a new job id, which is served like any other job. Any other ending settles the loss with
the reason it was not re-run.

Never twice for one loss: the loss is settled in the store by a compare-and-set *before*
GitHub is asked, so of two passes (or two daemons on one database) only one asks. A re-run
GitHub refuses reopens the loss, and a later pass asks again after a growing wait (GitHub
refuses while other jobs of the run still run). A crash between the settlement and the call
loses the re-run rather than risking a second one: "never twice" wins over "always once" (the
loss stays recorded as re-run; the job can still be re-run by hand).

Nor again and again: an attempt runnerscale started by a re-run that loses its runner too is
not re-run, since the job itself may be what kills its runners (a container killed for using
too much memory dies just like a lost machine).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import replace

from runnerscale.controller.actions import Events, PoolRuntime, pool_by_runner_name
from runnerscale.logs import untrusted
from runnerscale.model import RERUN, Job, JobLoss, JobState, Runner
from runnerscale.protocols import Clock, GitHubAPI, GitHubError, Store

log = logging.getLogger("runnerscale.controller")

#: The wait before asking again for a re-run GitHub refused; it doubles up to the cap.
RETRY_WAIT = 30.0
#: The first wait after a re-run failed on GitHub's side (a 5xx, or no answer): such a failure
#: is usually over in seconds, unlike a refusal while the workflow run still runs.
TRANSIENT_RETRY_WAIT = 5.0
RETRY_WAIT_CAP = 3600.0
#: How long after a re-run its repository is read in full until its new attempt is heard of.
EXPECT_FOR = 3600.0
#: The most of GitHub's words kept in a loss's reason.
REASON_LIMIT = 300
#: Losses settled since the start shown in the status, the newest.
SHOWN = 20
#: How long after a job failed GitHub is asked whether its runner was lost: a daemon down
#: longer than this leaves such a job unexamined (and GitHub's own retention of runs is long).
EXAMINE_FOR = 3600.0
#: The store's failed jobs are looked through at most this often (a reconcile runs every few
#: seconds; a loss found a few seconds later costs nothing).
EXAMINE_EVERY = 15.0
#: GitHub's words, in a failed job's annotation, for a runner that died mid-job: a machine that
#: went silent, or a runner stopped by a signal (a spot machine reclaimed, a container killed).
LOST_RUNNER_WORDS = (
    "lost communication with the server",
    "The runner has received a shutdown signal",
)

#: A job across its attempts: repository, workflow run, job name.
Attempts = tuple[str, int, str]


def record_loss(store: Store, runner: Runner, why: str, now: float) -> JobLoss | None:
    """``runner`` died while busy (``why``): record the job it ran as lost. None when that job
    is not known, or its loss was recorded already."""
    job = _running_job(store, runner)
    if job is None:
        log.warning(
            "runner %s (pool %s) died mid-job, but its job is not known: it cannot be re-run",
            runner.name,
            runner.pool,
        )
        return None
    reason = f"runner {runner.name} died mid-job: {why}"
    return _record(store, JobLoss(job.id, job.repo, runner.pool, reason, lost_at=now))


def _record(store: Store, loss: JobLoss) -> JobLoss | None:
    """Record ``loss`` and say so; None when its job's loss was recorded already."""
    if not store.record_job_loss(loss):
        return None
    log.info("job %s of %s: lost: %s", loss.job_id, loss.repo, loss.reason)
    return loss


def lost_runner_message(messages: Collection[str]) -> str | None:
    """The annotation (of a failed job's) in which GitHub says the job's runner was lost."""
    return next((m for m in messages if any(words in m for words in LOST_RUNNER_WORDS)), None)


def _running_job(store: Store, runner: Runner) -> Job | None:
    if runner.job_id is not None:
        return store.get_job(runner.job_id)
    # Busy by GitHub's runner list before a webhook of its job named it: find the job.
    return next(
        (job for job in store.jobs([JobState.IN_PROGRESS]) if job.runner_name == runner.name),
        None,
    )


def _attempts(job: Job) -> Attempts | None:
    if job.run_id is None or job.name is None:
        return None
    return (job.repo.lower(), job.run_id, job.name)


def verdict(
    loss: JobLoss,
    job: Job | None,
    rerun_lost_jobs: Mapping[str, bool],
    rerun_before: Collection[Attempts],
) -> str | None:
    """What becomes of an unsettled loss: None while its job has not ended, :data:`RERUN`, or
    why it is not re-run. ``rerun_lost_jobs``: each pool's setting; ``rerun_before``: the jobs
    (across attempts) runnerscale has re-run already."""
    if job is None:
        return "not re-run: its job is no longer known"
    if job.state is not JobState.COMPLETED:
        return None
    if job.conclusion != "failure":
        return f"not re-run: the job ended {job.conclusion or 'without a conclusion'}"
    if not rerun_lost_jobs.get(loss.pool, False):
        return f"not re-run: pool {loss.pool} does not re-run lost jobs (rerun_lost_jobs)"
    if _attempts(job) in rerun_before:
        return "not re-run: an earlier attempt of this job was re-run already"
    return RERUN


class Reruns:
    """Settles the losses whose jobs have ended: re-runs them, or says why not."""

    def __init__(
        self,
        store: Store,
        github: GitHubAPI,
        clock: Clock,
        pools: Mapping[str, PoolRuntime],
        events: Events,
    ) -> None:
        self.store = store
        self.github = github
        self.clock = clock
        self.pools = pools
        self.events = events
        #: Re-runs GitHub refused: job id -> (not before, the wait after the next refusal).
        self._retries: dict[int, tuple[float, float]] = {}
        self._unsettled: list[JobLoss] = []
        self._settled: deque[JobLoss] = deque(maxlen=SHOWN)
        #: Failed jobs whose annotations were read already (within :data:`EXAMINE_FOR`).
        self._examined: set[int] = set()
        self._next_examination = 0.0

    def shown(self) -> list[JobLoss]:
        """For the status: the losses whose jobs have not ended yet (or whose re-run is to be
        retried), then those settled since the start, the newest first."""
        return [*self._unsettled, *self._settled]

    def expected_repos(self) -> frozenset[str]:
        """Repositories of re-runs asked for within :data:`EXPECT_FOR` whose new attempt has
        not been heard of: a re-run is no push, so if its webhook is lost only a poll that
        reads the repository in full finds it (:class:`~runnerscale.protocols.PollHints`)."""
        since = self.clock.now() - EXPECT_FOR
        recent = [
            loss
            for loss in self.store.job_losses(settled=True)
            if loss.outcome == RERUN and loss.settled_at is not None and loss.settled_at >= since
        ]
        if not recent:
            return frozenset()
        newest: dict[tuple[str, int], int] = {}
        for known in self.store.jobs():
            if known.run_id is not None:
                key = (known.repo.lower(), known.run_id)
                newest[key] = max(newest.get(key, 0), known.id)
        expected: set[str] = set()
        for loss in recent:
            lost = self.store.get_job(loss.job_id)
            if lost is None or lost.run_id is None:
                continue
            if newest.get((lost.repo.lower(), lost.run_id), 0) <= lost.id:
                expected.add(lost.repo)
        return frozenset(expected)

    async def settle(self) -> None:
        """One pass (part of each reconcile): the failed jobs GitHub may say lost their runner
        examined, then every unsettled loss whose job has ended settled."""
        now = self.clock.now()
        await self._examine_failures(now)
        unsettled = self.store.job_losses(settled=False)
        waiting = {loss.job_id for loss in unsettled}
        self._retries = {key: wait for key, wait in self._retries.items() if key in waiting}
        due = [loss for loss in unsettled if now >= self._retries.get(loss.job_id, (0.0, 0.0))[0]]
        jobs = {loss.job_id: self.store.get_job(loss.job_id) for loss in due}
        ended = any(job is not None and job.state is JobState.COMPLETED for job in jobs.values())
        flags = {name: pool.rerun_lost_jobs for name, pool in self.pools.items()}
        rerun_before = self._rerun_before() if ended else set()
        settled: set[int] = set()
        for loss in due:
            job = jobs[loss.job_id]
            outcome = verdict(loss, job, flags, rerun_before)
            if outcome is None or not self.store.settle_job_loss(loss.job_id, outcome, now):
                continue  # not ended yet; or another pass (another daemon) settled it
            done = replace(loss, settled_at=now, outcome=outcome)
            if outcome == RERUN:
                assert job is not None
                if not await self._rerun(done, job):
                    continue
                if (attempts := _attempts(job)) is not None:
                    rerun_before.add(attempts)
            else:
                log.info("job %s of %s: %s (%s)", loss.job_id, loss.repo, outcome, loss.reason)
            settled.add(loss.job_id)
            self._settled.appendleft(done)
        self._unsettled = [loss for loss in unsettled if loss.job_id not in settled]

    async def _examine_failures(self, now: float) -> None:
        """Record the losses GitHub reports and runnerscale did not see: each job of a pool
        that re-runs lost jobs (by its runner's name prefix) that failed within
        :data:`EXAMINE_FOR` with no loss recorded gets its annotations read, once."""
        rerunning = [pool for pool in self.pools.values() if pool.rerun_lost_jobs]
        if not rerunning or now < self._next_examination:
            return
        self._next_examination = now + EXAMINE_EVERY
        recorded = {loss.job_id for loss in self.store.job_losses()}
        candidates: list[tuple[Job, str]] = []
        for job in self.store.jobs([JobState.COMPLETED], completed_since=now - EXAMINE_FOR):
            if job.conclusion != "failure" or job.id in recorded or job.runner_name is None:
                continue
            owner = pool_by_runner_name(rerunning, job.runner_name)
            if owner is not None:
                candidates.append((job, owner.name))
        self._examined &= {job.id for job, _pool in candidates}
        for job, pool in candidates:
            if job.id in self._examined:
                continue
            try:
                messages = await self.github.job_annotations(job.repo, job.id)
            except GitHubError as error:
                log.warning(
                    "job %s of %s: reading why it failed: %s (tried again next pass)",
                    job.id,
                    job.repo,
                    error,
                )
                return
            self._examined.add(job.id)
            message = lost_runner_message(messages)
            if message is None:
                continue  # failed by its own steps
            reason = f"GitHub: {untrusted(message, REASON_LIMIT)}"
            _record(self.store, JobLoss(job.id, job.repo, pool, reason, lost_at=now))

    def _rerun_before(self) -> set[Attempts]:
        """The jobs (across attempts) whose loss was settled by a re-run."""
        found: set[Attempts] = set()
        for loss in self.store.job_losses(settled=True):
            job = self.store.get_job(loss.job_id) if loss.outcome == RERUN else None
            attempts = _attempts(job) if job is not None else None
            if attempts is not None:
                found.add(attempts)
        return found

    async def _rerun(self, loss: JobLoss, job: Job) -> bool:
        """Ask GitHub to re-run the job of a loss settled (claimed) for it. Refused: the loss
        is reopened, to be asked again after a wait."""
        assert loss.settled_at is not None
        try:
            await self.github.rerun_job(job.repo, job.id)
        except GitHubError as error:
            self.store.reopen_job_loss(loss.job_id, loss.settled_at)
            transient = error.status is None or error.status >= 500
            first = TRANSIENT_RETRY_WAIT if transient else RETRY_WAIT
            wait = self._retries.get(loss.job_id, (0.0, first))[1]
            self._retries[loss.job_id] = (self.clock.now() + wait, min(2 * wait, RETRY_WAIT_CAP))
            log.warning(
                "job %s of %s: re-running it failed (next try in %.0fs): %s",
                job.id,
                job.repo,
                wait,
                error,
            )
            self.events.error(loss.pool, "rerun")
            return False
        self._retries.pop(loss.job_id, None)
        log.info("job %s of %s (pool %s): re-run: %s", job.id, job.repo, loss.pool, loss.reason)
        self.events.rerun(loss.pool)
        return True
