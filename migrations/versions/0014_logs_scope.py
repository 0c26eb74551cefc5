"""the logs scope: reading request logs (clients' raw inputs) needs a key created with
``logs``, ``read+logs`` or ``write+logs`` (or admin); read and write keys no longer do

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10 10:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SCOPES = "scope IN ('admin', 'write', 'read', 'infer')"
NEW_SCOPES = "scope IN ('admin', 'write', 'read', 'infer', 'logs', 'read+logs', 'write+logs')"


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_scope_valid'), type_='check')
        batch_op.create_check_constraint('scope_valid', NEW_SCOPES)


def downgrade() -> None:
    # Before this revision read and write keys read the logs: read+logs and write+logs
    # become them. A logs-only key would become a read key, which reads far more than
    # the logs: it is revoked instead.
    op.execute(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, CURRENT_TIMESTAMP), "
        "scope = 'read' WHERE scope = 'logs'"
    )
    op.execute("UPDATE api_keys SET scope = 'read' WHERE scope = 'read+logs'")
    op.execute("UPDATE api_keys SET scope = 'write' WHERE scope = 'write+logs'")
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_api_keys_scope_valid'), type_='check')
        batch_op.create_check_constraint('scope_valid', OLD_SCOPES)
