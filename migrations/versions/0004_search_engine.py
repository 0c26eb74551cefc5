"""search engine: trial values, metrics, retries, infeasible state; job trial slots

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 23:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = "state IN ('running', 'complete', 'pruned', 'failed', 'lost')"
NEW_STATES = "state IN ('running', 'complete', 'pruned', 'failed', 'lost', 'infeasible')"


def upgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('values', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('metrics', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('retry_of', sa.Integer(), nullable=True))
        batch_op.drop_constraint(op.f('ck_trials_state_valid'), type_='check')
        batch_op.create_check_constraint('state_valid', NEW_STATES)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trial_slots', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('trial_slots', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('trial_slots')
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_trials_state_valid'), type_='check')
        batch_op.create_check_constraint('state_valid', OLD_STATES)
        batch_op.drop_column('retry_of')
        batch_op.drop_column('metrics')
        batch_op.drop_column('values')
