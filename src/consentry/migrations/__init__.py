"""Alembic migrations, shipped inside the package so an installed ``consentry`` can upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

if TYPE_CHECKING:
    from consentry.config import Settings

HERE = Path(__file__).parent


def metadata() -> MetaData:
    """The metadata of every table, each capability's tables imported."""
    from consentry.analytics import tables as _analytics  # noqa: F401
    from consentry.audiences import export_tables as _audience_exports  # noqa: F401
    from consentry.audiences import tables as _audiences  # noqa: F401
    from consentry.commerce import tables as _commerce  # noqa: F401
    from consentry.consent import tables as _consent  # noqa: F401
    from consentry.delivery import tables as _delivery  # noqa: F401
    from consentry.ingest import tables as _ingest  # noqa: F401
    from consentry.journeys import tables as _journeys  # noqa: F401
    from consentry.platform import audit_tables as _audit  # noqa: F401
    from consentry.platform import tenancy as _tenancy  # noqa: F401
    from consentry.platform.db import Base
    from consentry.privacy import request_tables as _requests  # noqa: F401
    from consentry.privacy import tables as _privacy  # noqa: F401
    from consentry.profiles import dedupe_tables as _dedupe  # noqa: F401
    from consentry.profiles import tables as _profiles  # noqa: F401
    from consentry.quality import tables as _quality  # noqa: F401
    from consentry.recommend import tables as _recommend  # noqa: F401

    return Base.metadata


def alembic_config(url: str, settings: Settings | None = None) -> Config:
    """An Alembic config pointing at these migrations and the store at ``url``; a migration
    that seals or opens values uses the keys of ``settings`` (else the process's settings)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if settings is not None:
        config.attributes["settings"] = settings
    return config


def upgrade(url: str, revision: str = "head", *, settings: Settings | None = None) -> None:
    """Bring the store at ``url`` to ``revision`` (``settings``: see :func:`alembic_config`)."""
    command.upgrade(alembic_config(url, settings), revision)


def current(url: str) -> str | None:
    """The revision the store at ``url`` is at, or None for an empty store."""
    from alembic.runtime.migration import MigrationContext

    from consentry.platform.db import create_db_engine

    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
