"""Settings, one class per concern, each with its own environment prefix.

Values come from (highest first) arguments, environment variables, a TOML config file
(``CIM_CONFIG``, default ``./cim.toml``) and the defaults below. Nothing is read at import
time: call :func:`load_settings` where a process starts (the CLI, the app factory, tests).
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class ConfigFileError(ValueError):
    """The config file cannot be read."""


def _config_file() -> Path:
    return Path(os.environ.get("CIM_CONFIG", "cim.toml"))


class _Section(BaseSettings):
    """Base for a settings section read from the environment and a ``[section]`` of cim.toml."""

    toml_section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, cls._file_section())

    @classmethod
    def _file_section(cls) -> dict[str, Any]:
        path = _config_file()
        if not path.is_file():
            return {}
        try:
            with path.open("rb") as f:
                return tomllib.load(f).get(cls.toml_section, {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None


class DatabaseSettings(_Section):
    """Where the city is stored: an external PostGIS (``url``) or the embedded cluster."""

    model_config = SettingsConfigDict(env_prefix="CIM_DATABASE_", extra="ignore")
    toml_section: ClassVar[str] = "database"

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of an external PostGIS; unset means the embedded cluster.",
    )
    data_dir: Path = Field(
        default=Path(".cim/pgdata"), description="Data directory of the embedded cluster."
    )
    port: int = Field(default=0, description="Port of the embedded cluster; 0 picks a free one.")
    name: str = Field(default="cim", description="Database name inside the embedded cluster.")
    pg_bin: Path | None = Field(
        default=None, description="Folder holding initdb/pg_ctl; found automatically when unset."
    )
    statement_timeout_ms: int = Field(default=0, ge=0, description="0 means no timeout.")
    pool_size: int = Field(
        default=16, ge=1, description="Connections each of a server process's pools (sync "
        "and async) keeps open; requests beyond it wait for one (new sessions cost PostGIS "
        "~30 ms of CPU to warm up).")
    replica_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL of a streaming replica the API reads from "
        "(writes stay on the primary); unset: every read goes to the primary.")
    replica_max_lag_s: float = Field(
        default=30.0, gt=0, description="Replay lag past which /ready reports the replica "
        "unready.")

    @field_validator("url", "replica_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class CitySettings(_Section):
    """The city the platform models."""

    model_config = SettingsConfigDict(env_prefix="CIM_CITY_", extra="ignore")
    toml_section: ClassVar[str] = "city"

    name: str = "Wuhan"
    # CGCS2000 / 3-degree Gauss-Kruger CM 114E: metric work for Wuhan happens here.
    crs: int = Field(default=4547, description="EPSG code of the city's projected (metric) CRS.")
    storage_srid: int = Field(
        default=4326, description="EPSG code geometries are stored in (lon/lat)."
    )


class StorageSettings(_Section):
    """Files the platform owns: DEMs as COG, generated demo data, reports."""

    model_config = SettingsConfigDict(env_prefix="CIM_STORAGE_", extra="ignore")
    toml_section: ClassVar[str] = "storage"

    root: Path = Field(default=Path(".cim/files"), description="Folder for rasters and reports.")

    @field_validator("root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def dem_dir(self) -> Path:
        return self.root / "dems"


class ServerSettings(_Section):
    """The HTTP server started by ``cim serve``."""

    model_config = SettingsConfigDict(env_prefix="CIM_SERVER_", extra="ignore")
    toml_section: ClassVar[str] = "server"

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1, description="Server processes for `cim serve`.")
    max_in_flight: int = Field(
        default=2, ge=0, description="Requests each server process runs at once; later ones "
        "wait their turn (0: no limit). bench/load.py's p99: 836 ms unlimited, ~320 ms at 8, "
        "~230 ms at 2 (two keep a process busy while the other waits for PostgreSQL).")
    in_flight_wait_s: float = Field(
        default=0.5, gt=0, description="Longest a request waits for its turn before it runs "
        "anyway.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins other sites' pages may call the API from ('*' for any).")


class FeaturesSettings(_Section):
    """The OGC API - Features endpoints."""

    model_config = SettingsConfigDict(env_prefix="CIM_FEATURES_", extra="ignore")
    toml_section: ClassVar[str] = "features"

    default_limit: int = Field(default=10, ge=1)
    max_limit: int = Field(default=10_000, ge=1)
    max_filter_nodes: int = Field(
        default=200, ge=1, description="Most nodes (operators, names, literals) a CQL2 filter "
        "may have; bigger ones are refused with 400.")
    max_write_bytes: int = Field(default=5_000_000, ge=1_000,
                                 description="Largest feature body a write accepts.")

    @field_validator("max_limit")
    @classmethod
    def _above_default(cls, value: int, info: Any) -> int:
        if value < info.data.get("default_limit", 1):
            raise ValueError("max_limit must not be below default_limit")
        return value


class AccessSettings(_Section):
    """Who sees what: the graded classification of layers (public, internal, restricted)."""

    model_config = SettingsConfigDict(env_prefix="CIM_ACCESS_", extra="ignore")
    toml_section: ClassVar[str] = "access"

    anonymous_clearance: Literal["public", "internal", "restricted"] = Field(
        default="public", description="Highest classification served without a key.")
    allow_anonymous: bool = Field(
        default=True, description="Serve requests without a key (at anonymous_clearance).")


class LimitsSettings(_Section):
    """What one client or one request may cost the server: rate, body size, query time.

    Rates are counted per API key (per client address without one) in each server process:
    ``cim serve --workers N`` lets a key make up to N times the rate across the processes."""

    model_config = SettingsConfigDict(env_prefix="CIM_LIMITS_", extra="ignore")
    toml_section: ClassVar[str] = "limits"

    enabled: bool = Field(default=True, description="Apply the rate limits at all.")
    requests_per_second: float = Field(
        default=50.0, gt=0, description="Sustained requests per second per key or address.")
    burst: int = Field(default=500, ge=1, description="Requests a key or address may make at "
                       "once before the sustained rate applies (a map view loads dozens of "
                       "tiles together).")
    max_body_bytes: int = Field(default=10_000_000, ge=1_000,
                                description="Largest request body; bigger ones get 413.")
    statement_timeout_ms: int = Field(
        default=15_000, ge=0, description="Longest a request's database statement may run "
        "(0: none); CIM_DATABASE_STATEMENT_TIMEOUT_MS, when set, wins.")
    max_unpacked_bytes: int = Field(default=4 * 2**30, ge=1,
                                    description="Largest total an imported archive unpacks to.")
    max_unpack_ratio: float = Field(default=200.0, ge=1, description="Highest unpacked to "
                                    "packed size of an imported archive (zip bombs).")
    max_archive_members: int = Field(default=10_000, ge=1,
                                     description="Most files an imported archive may hold.")
    max_raster_cells: int = Field(default=1_000_000_000, ge=1, description="Most cells an "
                                  "imported raster may have (it is read whole).")


class OidcSettings(_Section):
    """Optional OpenID Connect bearer tokens (JWTs) beside API keys, checked offline against
    a JWKS; role and clearance come from claims."""

    model_config = SettingsConfigDict(env_prefix="CIM_OIDC_", extra="ignore")
    toml_section: ClassVar[str] = "oidc"

    jwks: str | None = Field(default=None, description="The identity provider's JWKS: a file "
                             "path or the JSON itself; unset turns tokens off.")
    issuer: str | None = Field(default=None, description="The `iss` tokens must carry.")
    audience: str | None = Field(default=None, description="The `aud` tokens must carry.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    name_claim: str = Field(default="sub", description="Claim naming the caller (audit log).")
    role_claim: str = Field(default="cim_role", description="Claim holding the role.")
    clearance_claim: str = Field(default="cim_clearance",
                                 description="Claim holding the clearance.")
    default_role: Literal["viewer", "editor", "analyst", "admin"] = "viewer"
    default_clearance: Literal["public", "internal", "restricted"] = "public"
    leeway_s: int = Field(default=30, ge=0, description="Clock skew allowed on exp and nbf.")

    @field_validator("jwks", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def enabled(self) -> bool:
        return self.jwks is not None


class TilesSettings(_Section):
    """The server-side vector tile cache: memory in front of an optional folder."""

    model_config = SettingsConfigDict(env_prefix="CIM_TILES_", extra="ignore")
    toml_section: ClassVar[str] = "tiles"

    enabled: bool = Field(default=True, description="Serve tiles through the cache.")
    cache_dir: Path | None = Field(
        default=Path(".cim/tiles"), description="Folder of the disk cache; empty: memory only.")
    memory_bytes: int = Field(default=256 * 2**20, ge=0,
                              description="Bound of the in-memory cache, bytes.")
    max_stale_s: float = Field(
        default=30.0, ge=0, le=60,
        description="How long after an edit an evicted tile may still be served, stale, "
        "while it is re-rendered (at most the clients' max-age, 60 s); 0: never.")

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("cache_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()


class ScenariosSettings(_Section):
    """How long finished scenarios and their files are kept (the results folder is bounded)."""

    model_config = SettingsConfigDict(env_prefix="CIM_SCENARIOS_", extra="ignore")
    toml_section: ClassVar[str] = "scenarios"

    keep_days: float = Field(default=0, ge=0, description="Remove finished scenarios older "
                             "than this many days (0: keep them however old).")
    max_bytes: int = Field(default=20 * 2**30, ge=0, description="Remove the oldest finished "
                           "scenarios while their files take more than this (0: no bound).")


class BatchSettings(_Section):
    """Where heavy batch work (tile pyramids, 3D builds, flood ensembles) runs: Dask."""

    model_config = SettingsConfigDict(env_prefix="CIM_BATCH_", extra="ignore")
    toml_section: ClassVar[str] = "batch"

    scheduler: str | None = Field(default=None, description="A running Dask scheduler "
                                  "(tcp://HOST:PORT); unset: a LocalCluster on this machine.")
    workers: int = Field(default=0, ge=0, description="LocalCluster worker processes "
                         "(0: one per core).")
    threads_per_worker: int = Field(default=1, ge=1, description="Threads in each "
                                    "LocalCluster worker (numba and GDAL release the GIL).")

    @field_validator("scheduler", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return value or None


class CatchmentsSettings(_Section):
    """A flood run split by drainage catchment (``cim flood catchments``)."""

    model_config = SettingsConfigDict(env_prefix="CIM_CATCHMENTS_", extra="ignore")
    toml_section: ClassVar[str] = "catchments"

    max_crossing: float = Field(default=0.01, ge=0, le=1, description="Refuse the split when "
                                "the water crossing a catchment's edge exceeds this share of "
                                "the rain on it.")
    buffer_cells: int = Field(default=10, ge=1, description="Cells around each catchment "
                              "that its task simulates too, so water crossing a divide flows "
                              "on instead of piling against a wall.")
    min_depth_m: float = Field(default=0.3, gt=0, description="Pits shallower than this "
                               "belong to the catchment they spill into.")
    min_cells: int = Field(default=400, ge=1, description="Smaller catchments join the "
                           "neighbour they spill into.")


class Settings:
    """All sections together; built by :func:`load_settings`."""

    def __init__(self, **sections: Any) -> None:
        self._overrides = sections

    def replace(self, **sections: Any) -> Settings:
        """The same settings with the given sections replaced."""
        return Settings(**{**self._overrides, **sections})

    def _section(self, name: str, cls: type[_Section]) -> Any:
        given = self._overrides.get(name)
        if isinstance(given, cls):
            return given
        return cls(**(given or {}))

    @cached_property
    def database(self) -> DatabaseSettings:
        return self._section("database", DatabaseSettings)

    @cached_property
    def city(self) -> CitySettings:
        return self._section("city", CitySettings)

    @cached_property
    def storage(self) -> StorageSettings:
        return self._section("storage", StorageSettings)

    @cached_property
    def server(self) -> ServerSettings:
        return self._section("server", ServerSettings)

    @cached_property
    def features(self) -> FeaturesSettings:
        return self._section("features", FeaturesSettings)

    @cached_property
    def access(self) -> AccessSettings:
        return self._section("access", AccessSettings)

    @cached_property
    def tiles(self) -> TilesSettings:
        return self._section("tiles", TilesSettings)

    @cached_property
    def limits(self) -> LimitsSettings:
        return self._section("limits", LimitsSettings)

    @cached_property
    def oidc(self) -> OidcSettings:
        return self._section("oidc", OidcSettings)

    @cached_property
    def scenarios(self) -> ScenariosSettings:
        return self._section("scenarios", ScenariosSettings)

    @cached_property
    def batch(self) -> BatchSettings:
        return self._section("batch", BatchSettings)

    @cached_property
    def catchments(self) -> CatchmentsSettings:
        return self._section("catchments", CatchmentsSettings)


def load_settings(**sections: Any) -> Settings:
    """Settings from arguments, environment and config file (in that order of precedence)."""
    return Settings(**sections)
