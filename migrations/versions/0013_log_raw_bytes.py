"""request-log parts' uncompressed size: KILN_LOG_MAX_MB counts what a part unpacks to,
not its compressed file (a part of repeated text compresses a thousandfold); null for the
parts recorded before, which count their file's size

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('request_log_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_bytes', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('request_log_parts', schema=None) as batch_op:
        batch_op.drop_column('raw_bytes')
