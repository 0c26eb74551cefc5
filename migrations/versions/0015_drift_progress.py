"""drift progress: how far each gateway process's open drift window of a version has got
(its sampled rows, the window's size and the sample rate), for the model page to say when
the next window comes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 13:06:45.407256
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('drift_progress',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('gateway', sa.String(length=255), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('window_rows', sa.Integer(), nullable=False),
    sa.Column('sample', sa.Float(), nullable=False),
    sa.Column('updated_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_drift_progress_model_id_models')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_drift_progress_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_progress')),
    sa.UniqueConstraint('version_id', 'gateway', name=op.f('uq_drift_progress_version_id_gateway'))
    )
    with op.batch_alter_table('drift_progress', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_drift_progress_model_id'), ['model_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('drift_progress', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drift_progress_model_id'))

    op.drop_table('drift_progress')
