"""Apply the Alembic migrations shipped in ``migrations/`` to a live connection."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(conn: Connection) -> None:
    """Upgrade to head inside the caller's transaction (which holds the migration lock)."""
    command.upgrade(alembic_config(conn), "head")
