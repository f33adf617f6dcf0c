"""The initial schema: jobs, runners, webhook deliveries, key/value facts.

Written by hand to match ``runnerscale.store.tables`` (a test compares them on every backend).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("repo", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("completed_at", sa.Double(), nullable=True),
        sa.Column("runner_name", sa.String(255), nullable=True),
        sa.Column("conclusion", sa.String(32), nullable=True),
        sa.Column("observed_at", sa.Double(), nullable=False),
        sa.Column("pool", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_state_completed_at", "jobs", ["state", "completed_at"])

    op.create_table(
        "runners",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("pool", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("state_since", sa.Double(), nullable=False),
        sa.Column("github_id", sa.BigInteger(), nullable=True),
        sa.Column("instance_id", sa.String(255), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("idle_since", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_runners"),
    )
    op.create_index("ix_runners_pool_state", "runners", ["pool", "state"])
    op.create_index("ix_runners_state_state_since", "runners", ["state", "state_since"])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_seen_at", "deliveries", ["seen_at"])

    op.create_table(
        "kv",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_kv"),
    )


def downgrade() -> None:
    op.drop_table("kv")
    op.drop_index("ix_deliveries_seen_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_runners_state_state_since", table_name="runners")
    op.drop_index("ix_runners_pool_state", table_name="runners")
    op.drop_table("runners")
    op.drop_index("ix_jobs_state_completed_at", table_name="jobs")
    op.drop_table("jobs")
