"""``cim keys``: a key made on the command line opens the API; a revoked one no longer does."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cim.app import create_app
from tests import test_cli
from tests.test_cli import cim

db_env = test_cli.db_env  # fixture


@pytest.mark.parametrize("command", [["keys"], ["keys", "create"], ["keys", "list"],
                                     ["keys", "revoke"]])
def test_keys_commands_have_help(command):
    result = cim(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_create_list_use_and_revoke_a_key(db_env, engine, settings):
    made = cim("keys", "create", "water-bureau", "--role", "editor", "--clearance", "internal",
               env=db_env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("cim_")
    with engine.connect() as conn:  # only the digest is stored
        assert conn.scalar(text("SELECT count(*) FROM cim.api_keys WHERE digest = :s"),
                           {"s": secret}) == 0
    listed = cim("keys", "list", env=db_env)
    shown = listed.stdout + listed.stderr
    assert "water-bureau" in shown and "internal" in shown and secret not in shown

    again = cim("keys", "create", "water-bureau", env=db_env)
    assert again.returncode == 2 and "exists already" in again.stderr
    wrong = cim("keys", "create", "x", "--role", "mayor", env=db_env)
    assert wrong.returncode != 0 and "mayor" in wrong.stderr

    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        ids = [c["id"] for c in client.get("/collections", headers=headers).json()[
            "collections"]]
        assert "drainage_pipes" in ids
        assert cim("keys", "revoke", "water-bureau", env=db_env).returncode == 0
        assert client.get("/collections", headers=headers).status_code == 401
    gone = cim("keys", "revoke", "water-bureau", env=db_env)
    assert gone.returncode == 4 and "no active key" in gone.stderr
