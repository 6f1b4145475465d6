import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from order_engine.models import Base
from order_engine.ops import migrate
from tests.support.servers import recreate_database

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_database_url(servers):
    return recreate_database(servers, "order_engine_migration_test")


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_database_url):
    migrate.upgrade(empty_database_url)
    assert {"orders", "order_events"} <= _tables(empty_database_url)
    migrate.downgrade(empty_database_url, "base")
    assert _tables(empty_database_url) <= {"alembic_version"}
    migrate.upgrade(empty_database_url)
    assert {"orders", "order_events"} <= _tables(empty_database_url)


def test_models_and_migrations_agree(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
