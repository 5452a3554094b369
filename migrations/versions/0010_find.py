"""files: indexes for the list sorted by name and by size

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index('ix_files_owner_id_name', ['owner_id', 'name', 'id'], unique=False)
        batch_op.create_index('ix_files_owner_id_size', ['owner_id', 'size', 'id'], unique=False)


def downgrade() -> None:
    # ix_files_owner_id_newest still serves the foreign key on owner_id, so MySQL lets these two go.
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index('ix_files_owner_id_size')
        batch_op.drop_index('ix_files_owner_id_name')
