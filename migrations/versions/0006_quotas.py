"""users.bytes_used, bytes_reserved, quota_bytes: per-user storage quotas

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bytes_used', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('bytes_reserved', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('quota_bytes', sa.BigInteger(), nullable=True))
    op.execute("UPDATE users SET bytes_used = "
               "(SELECT COALESCE(SUM(files.size), 0) FROM files WHERE files.owner_id = users.id)")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('quota_bytes')
        batch_op.drop_column('bytes_reserved')
        batch_op.drop_column('bytes_used')
