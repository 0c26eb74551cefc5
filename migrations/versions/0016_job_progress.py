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
    # Renamed in place on both databases (SQLite >= 3.25 has RENAME COLUMN). Batch mode's
    # default on SQLite copies the table and drops the old one, which with foreign keys on
    # deletes every job's trials or is refused for a job with a registered version.
    with op.batch_alter_table('jobs', schema=None, recreate='never') as batch_op:
        for old, new in RENAMES:
            batch_op.alter_column(old, new_column_name=new)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None, recreate='never') as batch_op:
        for old, new in RENAMES:
            batch_op.alter_column(new, new_column_name=old)
