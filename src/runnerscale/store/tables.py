"""The database schema, as SQLAlchemy 2.0 typed declarative models.

Why plain columns and no relationships: the store converts rows to the domain dataclasses of
:mod:`runnerscale.model` at its edge, and nothing outside ``store`` sees these classes. A runner's
``job_id`` deliberately has no foreign key: a job row may be pruned (or never stored, when the
runner was adopted) while the runner still remembers it.

Times are seconds since the Unix epoch as double precision floats, like the injected clock
returns them, so the virtual clock of the simulation stores exactly what it reads. Job and GitHub
runner ids are 64-bit: GitHub's job ids passed 2**31 long ago.

The migrations in ``versions/`` are written by hand to match this module; a test compares
them, so change both together (with a new migration, never by editing an old one).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Double, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "DeliveryRow", "JobLossRow", "JobRow", "KeyValueRow", "RunnerRow", "metadata"]

#: Names for constraints and indexes, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class JobRow(Base):
    """A workflow job as last observed (``runnerscale.model.Job``)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    repo: Mapped[str] = mapped_column(String(255))
    labels: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Double)
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[float | None] = mapped_column(Double)
    completed_at: Mapped[float | None] = mapped_column(Double)
    runner_name: Mapped[str | None] = mapped_column(String(255))
    conclusion: Mapped[str | None] = mapped_column(String(32))
    observed_at: Mapped[float] = mapped_column(Double)
    pool: Mapped[str | None] = mapped_column(String(255))

    # Every cycle asks for the jobs in given states; pruning asks for old completed ones.
    __table_args__ = (Index("ix_jobs_state_completed_at", "state", "completed_at"),)


class JobLossRow(Base):
    """A job whose runner died while running it (``runnerscale.model.JobLoss``).

    A table of its own, not columns of ``jobs``: losses are rare, and the controller reads
    the unsettled ones every reconcile; a small table answers that without scanning a week of
    jobs. Pruned with its job."""

    __tablename__ = "job_losses"

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    repo: Mapped[str] = mapped_column(String(255))
    pool: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    lost_at: Mapped[float] = mapped_column(Double)
    settled_at: Mapped[float | None] = mapped_column(Double)
    outcome: Mapped[str | None] = mapped_column(Text)


class RunnerRow(Base):
    """A runner runnerscale created or adopted (``runnerscale.model.Runner``). Never a secret:
    the JIT config goes straight from GitHub to the backend and is not stored."""

    __tablename__ = "runners"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    pool: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Double)
    state_since: Mapped[float] = mapped_column(Double)
    github_id: Mapped[int | None] = mapped_column(BigInteger)
    instance_id: Mapped[str | None] = mapped_column(String(255))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    idle_since: Mapped[float | None] = mapped_column(Double)
    #: The labels it registered with at GitHub; empty: its pool's (``Runner.labels``).
    labels: Mapped[list[str]] = mapped_column(JSON, server_default=text("'[]'"))

    # The controller lists runners per pool and state; the janitor (and pruning) per state.
    __table_args__ = (
        Index("ix_runners_pool_state", "pool", "state"),
        Index("ix_runners_state_state_since", "state", "state_since"),
    )


class DeliveryRow(Base):
    """A webhook delivery id already handled (GitHub redelivers; duplicates must be harmless)."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[float] = mapped_column(Double, index=True)


class KeyValueRow(Base):
    """Small facts that must survive a restart: ETags, polling cursors."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
