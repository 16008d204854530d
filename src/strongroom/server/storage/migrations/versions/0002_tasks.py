"""Tasks, executions and their steps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from strongroom.server.storage.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", Id, primary_key=True),
        sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("steps_json", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_tasks_tenant", "tasks", ["tenant_id", "id"])
    op.create_table(
        "executions",
        sa.Column("id", Id, primary_key=True),
        sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("steps_json", sa.Text(), nullable=False),
        sa.Column("input_json", sa.Text(), nullable=True),
        sa.Column("output_json", sa.Text(), nullable=True),
        sa.Column("error_json", sa.Text(), nullable=True),
        sa.Column("created_by", Id, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_executions_tenant", "executions", ["tenant_id", "id"])
    op.create_index("ix_executions_tenant_task", "executions", ["tenant_id", "task_id", "id"])
    op.create_index("ix_executions_status", "executions", ["status"])
    op.create_table(
        "execution_steps",
        sa.Column("execution_id", Id, sa.ForeignKey("executions.id"), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output_json", sa.Text(), nullable=True),
        sa.Column("error_json", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("kek_id", sa.Integer(), nullable=True),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_execution_steps_kek", "execution_steps", ["kek_id"])
