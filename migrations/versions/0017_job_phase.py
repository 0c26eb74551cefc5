"""job phase: what a running job is doing now (a search: its trials, then each step of its
finish), so its page and ``kiln jobs show`` can say it while it runs

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-10 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column added in place on both databases (no table copy on SQLite).
    with op.batch_alter_table('jobs', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('phase', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('phase')
