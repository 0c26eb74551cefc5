"""job progress: a job's counts are ``progress_done`` / ``progress_total``, in the unit its
kind counts in (trials, steps, rows), no longer ``trials_done`` / ``trials_total`` for
every kind

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-09 10:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = (('trials_done', 'progress_done'), ('trials_total', 'progress_total'))


def upgrade() -> None:
    # batch mode: SQLite renames a column by copying the table; PostgreSQL alters it in place
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for old, new in RENAMES:
            batch_op.alter_column(old, new_column_name=new)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for old, new in RENAMES:
            batch_op.alter_column(new, new_column_name=old)
