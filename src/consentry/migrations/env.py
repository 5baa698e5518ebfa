"""Alembic environment: runs migrations online against the configured URL."""

from __future__ import annotations

from alembic import context

from consentry.migrations import metadata
from consentry.platform.db import create_db_engine

config = context.config


def run() -> None:
    """Run the migrations in one transaction per store."""
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_db_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata(),
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
