"""traffic and monitoring: an alias's weighted versions and shadow (and their history),
shadow comparisons, request-log parts, drift windows and model events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 13:34:30.057785
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('model_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_events_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_events'))
    )
    with op.batch_alter_table('model_events', schema=None) as batch_op:
        batch_op.create_index('ix_model_events_model_created', ['model_id', 'created_at'], unique=False)

    op.create_table('request_log_parts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('first_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_request_log_parts_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_log_parts')),
    sa.UniqueConstraint('key', name=op.f('uq_request_log_parts_key'))
    )
    with op.batch_alter_table('request_log_parts', schema=None) as batch_op:
        batch_op.create_index('ix_request_log_parts_model_created', ['model_id', 'created_at'], unique=False)

    op.create_table('drift_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('max_psi', sa.Float(), nullable=True),
    sa.Column('drifted', sa.Boolean(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('ended_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_drift_windows_model_id_models')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_drift_windows_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_windows'))
    )
    with op.batch_alter_table('drift_windows', schema=None) as batch_op:
        batch_op.create_index('ix_drift_windows_model_ended', ['model_id', 'ended_at'], unique=False)

    op.create_table('shadow_comparisons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('primary_version_id', sa.Integer(), nullable=False),
    sa.Column('shadow_version_id', sa.Integer(), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('agreed', sa.BigInteger(), nullable=False),
    sa.Column('abs_diff_sum', sa.Float(), nullable=False),
    sa.Column('dropped', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('created_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_shadow_comparisons_model_id_models')),
    sa.ForeignKeyConstraint(['primary_version_id'], ['model_versions.id'], name=op.f('fk_shadow_comparisons_primary_version_id_model_versions')),
    sa.ForeignKeyConstraint(['shadow_version_id'], ['model_versions.id'], name=op.f('fk_shadow_comparisons_shadow_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shadow_comparisons')),
    sa.UniqueConstraint('model_id', 'primary_version_id', 'shadow_version_id', name='uq_shadow_comparisons_versions')
    )
    with op.batch_alter_table('shadow_comparisons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shadow_comparisons_model_id'), ['model_id'], unique=False)

    with op.batch_alter_table('alias_history', schema=None) as batch_op:
        batch_op.add_column(sa.Column('split', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('shadow_version_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_alias_history_shadow_version_id_model_versions'), 'model_versions', ['shadow_version_id'], ['id'])

    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('split', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('shadow_version_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_aliases_shadow_version_id_model_versions'), 'model_versions', ['shadow_version_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_aliases_shadow_version_id_model_versions'), type_='foreignkey')
        batch_op.drop_column('shadow_version_id')
        batch_op.drop_column('split')

    with op.batch_alter_table('alias_history', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_alias_history_shadow_version_id_model_versions'), type_='foreignkey')
        batch_op.drop_column('shadow_version_id')
        batch_op.drop_column('split')

    with op.batch_alter_table('shadow_comparisons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shadow_comparisons_model_id'))

    op.drop_table('shadow_comparisons')
    with op.batch_alter_table('drift_windows', schema=None) as batch_op:
        batch_op.drop_index('ix_drift_windows_model_ended')

    op.drop_table('drift_windows')
    with op.batch_alter_table('request_log_parts', schema=None) as batch_op:
        batch_op.drop_index('ix_request_log_parts_model_created')

    op.drop_table('request_log_parts')
    with op.batch_alter_table('model_events', schema=None) as batch_op:
        batch_op.drop_index('ix_model_events_model_created')

    op.drop_table('model_events')
