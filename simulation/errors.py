"""Errors of scenario jobs, whatever their kind; the app maps each to an HTTP status."""

from __future__ import annotations


class ScenarioInputError(Exception):
    """A scenario's inputs cannot be run (refused before the job is queued, or by the run)."""


class ScenarioNotFound(Exception):
    """No scenario has that id."""


class ScenarioConflict(Exception):
    """The scenario's status does not allow the action (cancel a finished run, rerun one
    that succeeded)."""


class Cancelled(Exception):
    """The run was cancelled, or its worker is stopping; nothing is published."""
