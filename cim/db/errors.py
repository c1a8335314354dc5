"""Errors of the database layer, each naming what to do about it."""


class DatabaseError(Exception):
    """Base of database-layer errors; the message is safe to show a user."""


class ClusterError(DatabaseError):
    """The embedded cluster could not be created, started or stopped."""


class PostgisMissingError(ClusterError):
    """PostgreSQL is there but the PostGIS extension is not (or is too old)."""


class DatabaseNotRunningError(DatabaseError):
    """The embedded cluster is not started and no external URL is configured."""
