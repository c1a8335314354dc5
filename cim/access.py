"""API keys, roles and clearances: who a request is, and what it may see and do.

A key is a random secret shown once at creation; only its SHA-256 digest is stored (the
secret has 256 bits of entropy, so a slow password hash would add nothing). A request names
its key in ``Authorization: Bearer ...`` or ``X-API-Key``; without one it is the anonymous
reader, whose clearance is a setting and who can be switched off altogether.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from layers.catalog import CLEARANCE_ORDER
from layers.model import Classification, LayerDefinition

KEY_PREFIX = "cim_"


class Role(StrEnum):
    viewer = "viewer"
    editor = "editor"
    analyst = "analyst"
    admin = "admin"


EDITING_ROLES = frozenset({Role.editor, Role.admin})


class AccessError(Exception):
    """A key operation that cannot be done (duplicate name, unknown key)."""


class KeyNotFound(AccessError):
    """No active key of that name."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's name, role and clearance, or the anonymous reader."""

    name: str
    role: Role
    clearance: Classification
    anonymous: bool = False

    def may_see(self, layer: LayerDefinition) -> bool:
        return (CLEARANCE_ORDER.index(layer.classification)
                <= CLEARANCE_ORDER.index(self.clearance))

    @property
    def may_edit(self) -> bool:
        return self.role in EDITING_ROLES


@dataclass(frozen=True)
class KeyRecord:
    name: str
    role: Role
    clearance: Classification
    created_at: datetime
    revoked_at: datetime | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(conn: Connection, name: str, role: Role,
               clearance: Classification) -> str:
    """Store a new key and return its secret (the only time it is ever known)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.begin_nested():
            conn.execute(text("INSERT INTO cim.api_keys (name, digest, role, clearance) "
                              "VALUES (:name, :digest, :role, :clearance)"),
                         {"name": name, "digest": digest(secret), "role": role.value,
                          "clearance": clearance.value})
    except IntegrityError:
        raise AccessError(f"a key named {name!r} exists already") from None
    return secret


def revoke_key(conn: Connection, name: str) -> None:
    revoked = conn.execute(text("UPDATE cim.api_keys SET revoked_at = now() "
                                "WHERE name = :name AND revoked_at IS NULL RETURNING id"),
                           {"name": name}).scalar()
    if revoked is None:
        raise KeyNotFound(f"no active key named {name!r}")


def list_keys(conn: Connection) -> list[KeyRecord]:
    rows = conn.execute(text("SELECT name, role, clearance, created_at, revoked_at "
                             "FROM cim.api_keys ORDER BY created_at, name")).all()
    return [KeyRecord(r.name, Role(r.role), Classification(r.clearance), r.created_at,
                      r.revoked_at) for r in rows]


def principal_for(conn: Connection, secret: str) -> Principal | None:
    """The active key's principal, or None for an unknown or revoked secret."""
    row = conn.execute(text("SELECT name, role, clearance FROM cim.api_keys "
                            "WHERE digest = :digest AND revoked_at IS NULL"),
                       {"digest": digest(secret)}).first()
    if row is None:
        return None
    return Principal(row.name, Role(row.role), Classification(row.clearance))
