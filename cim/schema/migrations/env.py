"""Alembic environment: the engine comes from ``cim.schema.migrate``, never from a file."""

from alembic import context
from geoalchemy2 import alembic_helpers

from cim.schema.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_schemas=True,
        version_table_schema="public",
        include_object=alembic_helpers.include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
    )
    context.run_migrations()
