"""Settings: environment over cim.toml over defaults, one section per concern."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.settings import load_settings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CIM_DATABASE_URL", "CIM_CITY_CRS", "CIM_CITY_NAME", "CIM_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "cim.toml"
    path.write_text(
        '[database]\nurl = "postgresql://u:secret@db.example/city"\n'
        '[city]\nname = "Wuhan"\ncrs = 4547\n'
        "[server]\nport = 9000\n"
    )
    monkeypatch.setenv("CIM_CONFIG", str(path))
    return path


def test_config_file_is_read(config):
    settings = load_settings()
    assert settings.server.port == 9000
    assert settings.city.crs == 4547
    assert settings.database.url.get_secret_value().endswith("@db.example/city")
    assert "secret" not in repr(settings.database)  # the password never reaches a log


def test_environment_wins_over_the_file(config, monkeypatch):
    monkeypatch.setenv("CIM_SERVER_PORT", "9100")
    monkeypatch.setenv("CIM_CITY_CRS", "32650")
    settings = load_settings()
    assert (settings.server.port, settings.city.crs) == (9100, 32650)


def test_arguments_win_over_everything(config):
    settings = load_settings(server={"port": 9200})
    assert settings.server.port == 9200


def test_bad_values_are_refused(config, monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("CIM_SERVER_PORT", "eighty")
    with pytest.raises(ValidationError, match="port"):
        load_settings().server  # noqa: B018 - sections are built on first use


def test_broken_config_file_is_a_clear_cli_error(config):
    import os
    import subprocess
    import sys
    from pathlib import Path

    config.write_text("[server\nport = 1\n")
    cim = str(Path(sys.executable).parent / "cim")
    result = subprocess.run([cim, "db", "url"], capture_output=True, text=True,
                            env={**os.environ}, timeout=60)
    assert result.returncode == 6
    assert "is not valid TOML" in result.stderr and "Traceback" not in result.stderr
