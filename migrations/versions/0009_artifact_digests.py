"""artifact digests: every stored artifact a later read depends on has its sha256 recorded

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('arrays_sha256', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('raw_sha256', sa.String(length=64), nullable=True))
    with op.batch_alter_table('trials') as batch:
        batch.add_column(sa.Column('checkpoint_sha256', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('predictions_sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trials') as batch:
        batch.drop_column('predictions_sha256')
        batch.drop_column('checkpoint_sha256')
    with op.batch_alter_table('datasets') as batch:
        batch.drop_column('raw_sha256')
        batch.drop_column('arrays_sha256')
