"""``cim tiles``: pre-seed the vector tile cache, export tile pyramids for offline use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import morecantile
import typer
from sqlalchemy import Engine

from cim.cli.db import engine_for
from cim.cli.progress import console, progress_bar
from cim.settings import Settings
from layers.catalog import load_catalog
from layers.model import MAX_ZOOM, Classification, LayerDefinition
from tiles.cache import TileCache, Tileset
from tiles.errors import TileError, UnknownLayer
from tiles.export import FORMATS, pmtiles_order, write_mbtiles, write_pmtiles
from tiles.invalidation import Invalidator
from tiles.metadata import attribution, vector_layers
from tiles.pyramid import Progress, check_zooms, data_bbox, parse_bbox, render_all, tiles_in
from tiles.terrain import dems_within, prepare_terrain
from tiles.threed.api import tilesets_folder
from tiles.threed.build import build_buildings
from tiles.threed.infrastructure import build_infrastructure

tiles_app = typer.Typer(help="Vector tiles: seed the server's cache, export PMTiles/MBTiles; "
                        "3D Tiles of the buildings and infrastructure.",
                        no_args_is_help=True)
GRID = "WebMercatorQuad"

MinZoom = Annotated[int, typer.Option("--min-zoom", min=0, max=MAX_ZOOM, help="First zoom.")]
MaxZoom = Annotated[int, typer.Option("--max-zoom", min=0, max=MAX_ZOOM, help="Last zoom.")]
BBoxOption = Annotated[str | None, typer.Option(
    "--bbox", help="west,south,east,north in lon/lat (default: the extent of the data).")]
Workers = Annotated[int, typer.Option(min=1, max=16, help="Tiles rendered at once.")]


def _visible(settings: Settings) -> list[LayerDefinition]:
    """The layers an anonymous reader sees: what the server's base map draws."""
    return load_catalog().visible_to(Classification(settings.access.anonymous_clearance))


@contextmanager
def _cache(settings: Settings, engine: Engine) -> Iterator[TileCache | None]:
    """The disk cache kept true to the database while we work (None when there is none)."""
    if not settings.tiles.enabled or settings.tiles.cache_dir is None:
        yield None
        return
    # No memory tier: every tile goes straight to the folder the server reads.
    invalidator = Invalidator(engine, load_catalog(), TileCache(0), settings.tiles.cache_dir)
    invalidator.sync()  # fails loudly here, unlike a server that waits for the database
    invalidator.start()
    try:
        yield invalidator.cache
        invalidator.sync()  # evict what changed while we rendered
    finally:
        invalidator.stop()


def _share(progress: Progress, part: int, parts: int, label: str) -> Progress:
    """One tileset's progress as its share of the whole bar."""
    return lambda stage, fraction: progress(f"{label} {stage}", (part + fraction) / parts)


@tiles_app.command()
def seed(
    ctx: typer.Context,
    min_zoom: MinZoom,
    max_zoom: MaxZoom,
    bbox: BBoxOption = None,
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", help="Seed this collection's tiles instead of the base map. "
        "Repeatable.")] = None,
    workers: Workers = 2,
) -> None:
    """Render every tile of a zoom range into the disk cache the server reads."""
    settings: Settings = ctx.obj
    check_zooms(min_zoom, max_zoom)
    if not settings.tiles.enabled or settings.tiles.cache_dir is None:
        raise TileError("seeding fills the disk tile cache: set CIM_TILES_CACHE_DIR "
                        "(and leave CIM_TILES_ENABLED true)")
    visible = {lyr.id: lyr for lyr in _visible(settings)}
    unknown = sorted(set(layer or []) - set(visible))
    if unknown:
        raise UnknownLayer(f"no collection {', '.join(unknown)}; "
                           f"collections: {', '.join(visible)}")
    tilesets = ([(name, Tileset.collection(name), [visible[name]])
                 for name in dict.fromkeys(layer)] if layer
                else [("base map", Tileset.base_map(list(visible)), list(visible.values()))])
    tms = morecantile.tms.get(GRID)
    engine = engine_for(settings)
    try:
        drawn = [lyr for _, _, layers in tilesets for lyr in layers]
        area = parse_bbox(bbox) if bbox else data_bbox(engine, drawn)
        tiles = tiles_in(tms, area, min_zoom, max_zoom)
        rendered = hits = 0
        with _cache(settings, engine) as cache, progress_bar("seed") as progress:
            for part, (label, tileset, layers) in enumerate(tilesets):
                step = _share(progress, part, len(tilesets), label)
                for _, _, hit in render_all(engine, cache, tileset, layers, tms, tiles, step,
                                            workers):
                    hits += hit
                    rendered += not hit
    finally:
        engine.dispose()
    console.print(f"{rendered + hits:,} tiles in {settings.tiles.cache_dir}: "
                  f"{rendered:,} rendered, {hits:,} already cached")


@tiles_app.command()
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="The archive to write: *.pmtiles or *.mbtiles.")],
    min_zoom: MinZoom,
    max_zoom: MaxZoom,
    bbox: BBoxOption = None,
    workers: Workers = 2,
) -> None:
    """Write the base map of a zoom range as a PMTiles or MBTiles archive for offline use."""
    settings: Settings = ctx.obj
    check_zooms(min_zoom, max_zoom)
    if out.suffix.lower() not in FORMATS:
        raise TileError(f"{out.name}: the archive must end in {' or '.join(FORMATS)}")
    visible = _visible(settings)
    drawn = [lyr for lyr in visible if lyr.min_zoom <= max_zoom and lyr.max_zoom >= min_zoom]
    tms = morecantile.tms.get(GRID)
    engine = engine_for(settings)
    try:
        area = parse_bbox(bbox) if bbox else data_bbox(engine, drawn)
        tiles = tiles_in(tms, area, min_zoom, max_zoom)
        pmtiles = out.suffix.lower() == ".pmtiles"
        metadata = {
            "name": f"{settings.city.name} base map",
            "description": f"{settings.city.name} city information model, zooms "
                           f"{min_zoom}-{max_zoom}",
            "attribution": attribution(drawn), "minzoom": min_zoom, "maxzoom": max_zoom,
            "vector_layers": vector_layers(drawn),
        }
        with _cache(settings, engine) as cache, progress_bar(f"export {out.name}") as step:
            rendered = render_all(engine, cache, Tileset.base_map(lyr.id for lyr in visible),
                                  visible, tms, pmtiles_order(tiles) if pmtiles else tiles,
                                  step, workers)
            writer = write_pmtiles if pmtiles else write_mbtiles
            written = writer(out, rendered, area, metadata)
    finally:
        engine.dispose()
    console.print(f"{written:,} tiles ({len(tiles) - written:,} empty left out) written to "
                  f"{out} ({out.stat().st_size / 2**20:.1f} MiB)")


@tiles_app.command("build-3d")
def build_3d(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder of the tilesets, one sub-folder each (default: the one the "
        "server reads, STORAGE_ROOT/3dtiles).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Rewrite every tile, not only those whose features changed.")] = False,
) -> None:
    """Build the OGC 3D Tiles 1.1 (tileset.json + glb) of the buildings, bridges, water and
    drainage network, and ready the DEMs for terrain tiles; reruns rewrite only the tiles
    whose features changed since."""
    settings: Settings = ctx.obj
    folder = out or tilesets_folder(settings.storage.root)
    engine = engine_for(settings)
    try:
        with progress_bar("3D tiles") as progress:
            reports = {"buildings": build_buildings(
                engine, folder / "buildings", _share(progress, 0, 3, "buildings"),
                full=full, storage_root=settings.storage.root)}
            reports.update(build_infrastructure(engine, folder, settings.storage.root,
                                                _share(progress, 1, 3, "infrastructure"),
                                                full=full))
            progress("terrain: Web Mercator copies of the DEMs", 2 / 3)
            with engine.connect() as conn:
                dems = dems_within(conn, settings.storage.root)
            prepare_terrain(dems, settings.storage.root)
    finally:
        engine.dispose()
    for name, report in reports.items():
        console.print(f"{name}: {report.buildings:,} features in {report.tiles:,} tiles: "
                      f"{report.written:,} written, {report.removed:,} removed, "
                      f"{report.tiles - report.written:,} unchanged, in {report.seconds:.1f} s")
    console.print(f"in {folder}")
