"""Executor claims: one live process per execution-engine executor id.

DBOS resumes a pending workflow only in a process of the executor id it ran under, so two
live processes sharing an id would resume each other's executions. ``engine_executors``
holds each id's claim (host, pid, when it was last seen); a process refuses to start on
an id another live process holds, and the scheduler fails the executions left pending
on an id not seen for ``STRONGROOM_EXECUTOR_GONE_SECONDS``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from strongroom.server.storage.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_executors",
        sa.Column("executor_id", sa.String(128), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("engine_executors")
