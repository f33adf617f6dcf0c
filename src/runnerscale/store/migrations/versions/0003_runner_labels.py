"""The labels a runner registered with at GitHub (``runners.labels``): a runner of a pool over
several hosts has its node group's labels beyond the pool's, and the scaler counts it in that
group. Rows of earlier versions get ``[]``: their pool's labels, which is what they registered
with.

Written by hand to match ``runnerscale.store.tables`` (a test compares them on every backend).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "runners",
        sa.Column("labels", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("runners") as batch:
        batch.drop_column("labels")
