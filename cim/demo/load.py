"""``cim demo load``: the real Wuhan and Shanghai pieces plus the generated Optics Valley district.

Every piece goes through the same import pipeline a data steward uses, so the demo city is
also the import's biggest integration test. Real OSM data is marked ``real``; everything the
generator made is marked ``synthetic``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pyogrio
from sqlalchemy import Engine

from cim.demo import DATA_DIR
from cim.ingest.dem import import_dem
from cim.ingest.observations import import_observations
from cim.ingest.pipeline import ImportOptions, import_file
from cim.ingest.report import ImportReport
from cim.schema.models import Provenance
from cim.settings import Settings

log = logging.getLogger(__name__)

DEMO_SOURCE = "demo-optics-valley"
ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"


@dataclass(frozen=True)
class RealPiece:
    """One layer of a shipped real file, imported into one city layer."""

    file: str
    source_layer: str
    layer: str
    source: str
    maps: tuple[str, ...] = ()


REAL_PIECES = (
    RealPiece(
        "wuhan/wuhan_osm_main_roads_and_boundary.gpkg",
        "city_boundary",
        "admin_units",
        "osm-wuhan-boundary",
    ),
    RealPiece(
        "wuhan/wuhan_osm_main_roads_and_boundary.gpkg",
        "main_roads",
        "roads",
        "osm-wuhan-main-roads",
    ),
    RealPiece("wuhan/wuhan_osm_waterways.gpkg", "waterways", "waterways", "osm-wuhan-waterways"),
    RealPiece(
        "wuhan/guanggu_osm_tilezen_sample.gpkg", "buildings", "buildings", "osm-guanggu-buildings"
    ),
    RealPiece("wuhan/guanggu_osm_tilezen_sample.gpkg", "roads", "roads", "osm-guanggu-roads"),
    RealPiece(
        "wuhan/guanggu_osm_tilezen_sample.gpkg", "water", "water_bodies", "osm-guanggu-water"
    ),
    # Lane-level network: max_speed is in m/s there.
    RealPiece(
        "wuhan/guanggu_road_network_mosstool.gpkg",
        "roads",
        "roads",
        "osm-guanggu-lanes",
        maps=("max_speed_kmh=max_speed*3.6",),
    ),
    RealPiece(
        "shanghai_bund/shanghai_bund_osm_tilezen.gpkg",
        "buildings",
        "buildings",
        "osm-shanghai-bund-buildings",
    ),
    RealPiece(
        "shanghai_bund/shanghai_bund_osm_tilezen.gpkg", "roads", "roads", "osm-shanghai-bund-roads"
    ),
    # The Bund's water layer mixes river areas and canal lines: each goes where it belongs,
    # and the report lists what the other layer refused.
    RealPiece(
        "shanghai_bund/shanghai_bund_osm_tilezen.gpkg",
        "water",
        "water_bodies",
        "osm-shanghai-bund-water",
    ),
    RealPiece(
        "shanghai_bund/shanghai_bund_osm_tilezen.gpkg",
        "water",
        "waterways",
        "osm-shanghai-bund-waterways",
    ),
)

# Generated layers in dependency order (addresses before the buildings that point to them).
GENERATED_LAYERS = (
    "admin_units",
    "addresses",
    "roads",
    "structures",
    "buildings",
    "water_bodies",
    "drainage_nodes",
    "drainage_pipes",
    "catchments",
    "assets",
    "sensors",
)


def load_demo(
    engine: Engine,
    settings: Settings,
    *,
    buildings: int | None = None,
    seed: int = 2026,
    with_real: bool = True,
    progress: Callable[[str, float], None] | None = None,
) -> list[ImportReport]:
    """Generate the district and import it with the real pieces; returns every report."""
    from cim.demo.generate import generate_city

    step = progress or (lambda stage, fraction: None)
    reports: list[ImportReport] = []
    pieces = REAL_PIECES if with_real else ()
    total = len(pieces) + len(GENERATED_LAYERS) + 3
    done = 0

    def advance(label: str) -> None:
        nonlocal done
        done += 1
        step(label, done / total)

    for piece in pieces:
        options = ImportOptions(
            layer=piece.layer,
            source=piece.source,
            source_layer=piece.source_layer,
            maps=list(piece.maps),
            skip_invalid=True,
        )
        reports.append(
            import_file(engine, DATA_DIR / piece.file, options, city_crs=settings.city.crs)
        )
        advance(f"real {piece.layer}")

    out_dir = settings.storage.root / "demo" / f"seed{seed}-{buildings or 'district'}"
    files = generate_city(
        out_dir,
        seed=seed,
        buildings=buildings,
        progress=lambda stage, f: step(f"generate {stage}", done / total),
    )
    advance("generated")
    present = set(pyogrio.list_layers(files.vector)[:, 0])
    for layer in GENERATED_LAYERS:
        if layer not in present:
            continue
        options = ImportOptions(
            layer=layer,
            source=DEMO_SOURCE,
            source_layer=layer,
            provenance=Provenance.synthetic,
            id_field="source_id",
        )
        reports.append(import_file(engine, files.vector, options, city_crs=settings.city.crs))
        advance(f"generated {layer}")
    reports.append(
        import_dem(
            engine,
            files.dem,
            settings.storage.root,
            name="optics-valley",
            source=DEMO_SOURCE,
            provenance=Provenance.synthetic,
        )
    )
    advance("DEM")
    reports.append(
        import_observations(
            engine, files.observations, source=DEMO_SOURCE, provenance=Provenance.synthetic
        )
    )
    advance("observations")
    return reports
