"""lifecycle: verified and disabled users, one-time codes of messages (verification, password reset)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
Login = sa.String(255).with_variant(mysql.VARCHAR(255, collation='utf8mb4_bin'), 'mysql', 'mariadb')
MYSQL = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'}

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('verified', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        'account_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('address', Login, nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('tries', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_at', UtcDateTime, nullable=False),
        sa.Column('expires_at', UtcDateTime, nullable=False),
        sa.Column('used_at', UtcDateTime, nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_codes_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_account_codes')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_account_codes_token_hash')),
        **MYSQL,
    )
    op.create_index(op.f('ix_account_codes_user_id'), 'account_codes', ['user_id'], unique=False)
    op.create_index(op.f('ix_account_codes_expires_at'), 'account_codes', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table('account_codes')  # its indexes and foreign key go with it
    with op.batch_alter_table('users') as batch:
        batch.drop_column('disabled')
        batch.drop_column('verified')
