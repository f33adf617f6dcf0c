"""Fault injection for the simulator: what goes wrong, how often, reproducibly.

A platform engineer wants to know how an autoscaler behaves when GitHub is slow, fails, runs
out of rate limit or loses webhooks. The simulator answers with a declarative fault plan set
through ``POST /_sim/faults``. Every random decision is drawn from one generator seeded by the
plan, so the same plan and the same sequence of requests give the same faults.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runnerscale.fakegithub.ratelimit import CORE, check_limits, check_windows


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperationFaults(_Strict):
    """Faults for REST operations (all, or one operation id)."""

    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of requests answered 5xx")
    error_status: Literal[500, 502, 503, 504] = 500
    latency: float = Field(0.0, ge=0.0, le=60.0, description="seconds added to each request")


class RateLimitFaults(_Strict):
    #: Use up the primary (hourly) budget of every credential now: requests get 403/429 with
    #: ``x-ratelimit-remaining: 0`` until the window resets.
    exhaust_primary: bool = False
    #: For this many seconds from now, requests get a secondary-limit answer with retry-after.
    secondary_for: float = Field(0.0, ge=0.0)
    retry_after: int = Field(60, ge=1, le=3600)
    status: Literal[403, 429] = 403
    #: The hourly ``core`` budget per credential (GitHub: 5,000 for a PAT or an App
    #: installation).
    limit: int | None = Field(None, ge=1)
    #: Budgets of other resources by name, per window (an hour unless ``windows`` says),
    #: e.g. ``{"actions_runner_registration": 2}`` (default: the figures of GitHub's
    #: published ``GET /rate_limit`` example).
    limits: dict[str, int] = Field(default_factory=dict)
    #: Seconds of a resource's window by name (default: an hour), e.g.
    #: ``{"actions_runner_registration": 300}`` with a limit of 1,500: the Actions limits
    #: page's "1500 runners / 5 minutes".
    windows: dict[str, float] = Field(default_factory=dict)

    @field_validator("limits")
    @classmethod
    def _known_resources(cls, limits: dict[str, int]) -> dict[str, int]:
        check_limits(limits)
        return limits

    @field_validator("windows")
    @classmethod
    def _known_windows(cls, windows: dict[str, float]) -> dict[str, float]:
        check_windows(windows)
        return windows

    @model_validator(mode="after")
    def _core_once(self) -> RateLimitFaults:
        if self.limit is not None and CORE in self.limits:
            raise ValueError("give the core limit once: either limit or limits.core")
        return self

    def resource_limits(self) -> dict[str, int]:
        """Every limit this plan sets, by resource (``limit`` is ``core``'s)."""
        core = {CORE: self.limit} if self.limit is not None else {}
        return {**self.limits, **core}


class WebhookFaults(_Strict):
    drop_rate: float = Field(0.0, ge=0.0, le=1.0)
    duplicate_rate: float = Field(0.0, ge=0.0, le=1.0)
    reorder_rate: float = Field(0.0, ge=0.0, le=1.0)


class FaultPlan(_Strict):
    """The body of ``POST /_sim/faults``; an empty object clears every fault."""

    seed: int = 0
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    error_status: Literal[500, 502, 503, 504] = 500
    latency: float = Field(0.0, ge=0.0, le=60.0)
    operations: dict[str, OperationFaults] = Field(default_factory=dict)
    #: Faults of every request about one repository (``owner/name``, any case), in place of
    #: the others: one repository failing while the rest of the organisation answers.
    repos: dict[str, OperationFaults] = Field(default_factory=dict)
    rate_limit: RateLimitFaults = Field(default_factory=RateLimitFaults)
    webhooks: WebhookFaults = Field(default_factory=WebhookFaults)

    @field_validator("repos")
    @classmethod
    def _repo_names(cls, repos: dict[str, OperationFaults]) -> dict[str, OperationFaults]:
        return {name.lower(): faults for name, faults in repos.items()}

    def for_operation(self, operation_id: str, repo: str | None = None) -> OperationFaults:
        """The faults of a request: its repository's (``repo``, when it names one), else its
        operation's, else the plan's own."""
        by_repo = None if repo is None else self.repos.get(repo.lower())
        if by_repo is not None:
            return by_repo
        specific = self.operations.get(operation_id)
        if specific is not None:
            return specific
        return OperationFaults(
            error_rate=self.error_rate, error_status=self.error_status, latency=self.latency
        )


class Faults:
    """The plan in force plus the seeded generator its decisions are drawn from."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self._rng = random.Random(self.plan.seed)

    def replace(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)

    def chance(self, rate: float) -> bool:
        """True with probability ``rate``; draws nothing when the rate is 0 or 1."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._rng.random() < rate
