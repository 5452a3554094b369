"""users.file_count: the list's total without counting rows

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_count', sa.Integer(), server_default='0', nullable=False))
    op.execute("UPDATE users SET file_count = (SELECT COUNT(*) FROM files WHERE files.owner_id = users.id)")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('file_count')
