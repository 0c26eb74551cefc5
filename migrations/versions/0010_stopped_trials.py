"""stopped trials: a trial cut off by the search's time budget (or its own time limit)
ends as ``stopped``, a normal end, not ``failed``

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:20:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = "state IN ('running', 'complete', 'pruned', 'failed', 'lost', 'infeasible')"
NEW_STATES = ("state IN ('running', 'complete', 'pruned', 'failed', 'lost', 'infeasible', "
              "'stopped')")


def upgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_trials_state_valid'), type_='check')
        batch_op.create_check_constraint('state_valid', NEW_STATES)


def downgrade() -> None:
    op.execute("UPDATE trials SET state = 'failed' WHERE state = 'stopped'")
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_trials_state_valid'), type_='check')
        batch_op.create_check_constraint('state_valid', OLD_STATES)
