"""The city information model: settings, database, schema, ingest, history, CLI."""
