"""The migrations build exactly the schema the code's table definitions describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from strongroom.server.services import Services
from strongroom.server.storage import open_store, schema


def test_migrated_schema_matches_table_definitions(services: Services) -> None:
    engine = services.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, schema.metadata) == []


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    for _ in range(2):
        store = open_store(database_url)
        try:
            store.migrate()
        finally:
            store.close()
    store = open_store(database_url)
    try:
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            assert MigrationContext.configure(conn).get_current_heads() == ("0008",)
    finally:
        store.close()
