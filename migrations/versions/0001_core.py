"""users, sessions, refresh tokens, login events

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 02:01:00.264164
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')
Login = sa.String(255).with_variant(mysql.VARCHAR(255, collation='utf8mb4_bin'), 'mysql', 'mariadb')
MYSQL = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'}

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', Login, nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('login', name=op.f('uq_users_login')),
    **MYSQL,
    )
    op.create_table('login_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('at', UtcDateTime, nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('user_agent', sa.String(length=255), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_events_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_events')),
    **MYSQL,
    )
    with op.batch_alter_table('login_events', schema=None) as batch_op:
        batch_op.create_index('ix_login_events_user_id_at', ['user_id', 'at'], unique=False)

    op.create_table('sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', UtcDateTime, nullable=False),
    sa.Column('last_used_at', UtcDateTime, nullable=False),
    sa.Column('expires_at', UtcDateTime, nullable=False),
    sa.Column('revoked_at', UtcDateTime, nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sessions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    **MYSQL,
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('refresh_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', UtcDateTime, nullable=False),
    sa.Column('expires_at', UtcDateTime, nullable=False),
    sa.Column('rotated_at', UtcDateTime, nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_refresh_tokens_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_refresh_tokens')),
    **MYSQL,
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_session_id'), ['session_id'], unique=False)



def downgrade() -> None:
    # Tables go children first; their indexes go with them (MySQL refuses to drop an index a foreign key needs).
    op.drop_table('refresh_tokens')
    op.drop_table('sessions')
    op.drop_table('login_events')
    op.drop_table('users')
