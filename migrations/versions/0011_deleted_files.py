"""deleting stored files: when a dataset's files, an archived version's artifact, or a
job's files (its batch input, output and scratch) were deleted, by hand or by retention

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core.db import UTCDateTime

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ('datasets', 'deleted_at'),
    ('model_versions', 'artifact_deleted_at'),
    ('jobs', 'files_deleted_at'),
    ('jobs', 'scratch_deleted_at'),
)


INDEXED = ('scratch_deleted_at', 'files_deleted_at')  # the retention sweep's lookups


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, UTCDateTime(timezone=True), nullable=True))
    for column in INDEXED:
        op.create_index(f'ix_jobs_{column}', 'jobs', [column])


def downgrade() -> None:
    for column in INDEXED:
        op.drop_index(f'ix_jobs_{column}', table_name='jobs')
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
