"""idempotent requests (answers kept for Idempotency-Key repeats)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 01:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'idempotent_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('api_key_id', sa.Integer(), nullable=False),
        sa.Column('route', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=False),
        sa.Column('response', sa.JSON(), nullable=False),
        sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('api_key_id', 'route', 'key'),
    )
    with op.batch_alter_table('idempotent_requests', schema=None) as batch_op:
        batch_op.create_index('ix_idempotent_requests_created_at', ['created_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('idempotent_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_idempotent_requests_created_at')
    op.drop_table('idempotent_requests')
