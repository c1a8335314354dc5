"""Errors of tile production with messages meant for the user (the CLI maps them to exit codes)."""

from __future__ import annotations


class TileError(Exception):
    """A tile request, seed or export that cannot be done as asked."""


class UnknownLayer(TileError):
    """A layer id the catalog does not have (or the reader may not see)."""
