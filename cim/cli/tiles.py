"""``cim tiles``: pre-seed the vector tile cache, export tile pyramids for offline use, build
3D Tiles; the heavy work runs on Dask (a local cluster, a given scheduler) or, with
``--in-process``, in this process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cim.cli.batch import InProcess, Scheduler, Workers, client_unless
from cim.cli.db import engine_for
from cim.cli.progress import console, progress_bar
from cim.settings import Settings
from layers.model import MAX_ZOOM
from tiles.errors import TileError, UnknownLayer

# The tile, 3D and Dask stacks are imported by the commands that use them: every `cim` start
# would pay for them otherwise (seconds: trimesh, dask.distributed).
if TYPE_CHECKING:
    from dask.distributed import Client
    from sqlalchemy import Engine

    from layers.model import LayerDefinition
    from tiles.invalidation import Invalidator
    from tiles.pyramid import Progress

tiles_app = typer.Typer(help="Vector tiles: seed the server's cache, export PMTiles/MBTiles; "
                        "3D Tiles of the buildings and infrastructure.",
                        no_args_is_help=True)
GRID = "WebMercatorQuad"

MinZoom = Annotated[int, typer.Option("--min-zoom", min=0, max=MAX_ZOOM, help="First zoom.")]
MaxZoom = Annotated[int, typer.Option("--max-zoom", min=0, max=MAX_ZOOM, help="Last zoom.")]
BBoxOption = Annotated[str | None, typer.Option(
    "--bbox", help="west,south,east,north in lon/lat (default: the extent of the data).")]
Threads = Annotated[int | None, typer.Option(
    "--threads", min=1, max=64, help="Tasks each process runs at once, Dask worker or "
    "--in-process (default: CIM_BATCH_THREADS_PER_WORKER).")]


def _visible(settings: Settings) -> list[LayerDefinition]:
    """The layers an anonymous reader sees: what the server's base map draws."""
    from layers.catalog import load_catalog
    from layers.model import Classification

    return load_catalog().visible_to(Classification(settings.access.anonymous_clearance))


def _cache(settings: Settings, engine: Engine) -> Invalidator | None:
    """The disk cache's invalidation, caught up with the database (its ``cache.folder`` is
    this database's tile folder); None when there is no disk cache."""
    from layers.catalog import load_catalog
    from tiles.cache import TileCache
    from tiles.invalidation import Invalidator

    if not settings.tiles.enabled or settings.tiles.cache_dir is None:
        return None
    invalidator = Invalidator(engine, load_catalog(), TileCache(0), settings.tiles.cache_dir)
    invalidator.sync()  # fails loudly here, unlike a server that waits for the database
    return invalidator


@contextmanager
def _batch(settings: Settings, scheduler: str | None, workers: int | None,
           threads: int | None, in_process: bool) -> Iterator[tuple[Client | None, int]]:
    """Where tasks run: a Dask client (None: here) and the tasks each process runs at once."""
    threads = threads or settings.batch.threads_per_worker
    batch = settings.batch.model_copy(update={"threads_per_worker": threads})
    with client_unless(in_process, batch, scheduler, workers) as client:
        yield client, threads


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
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads: Threads = None,
    in_process: InProcess = False,
) -> None:
    """Render every tile of a zoom range into the disk cache the server reads. Blocks of
    tiles render on Dask workers; the tiles reach the cache only when every block is done."""
    import morecantile

    from tiles.cache import Tileset
    from tiles.pyramid import check_zooms, data_bbox, parse_bbox, seed_pyramid, tiles_in

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
    tilesets = ([(Tileset.collection(name), [visible[name]]) for name in dict.fromkeys(layer)]
                if layer else [(Tileset.base_map(list(visible)), list(visible.values()))])
    engine = engine_for(settings)
    try:
        drawn = [lyr for _, layers in tilesets for lyr in layers]
        area = parse_bbox(bbox) if bbox else data_bbox(engine, drawn)
        tiles = tiles_in(morecantile.tms.get(GRID), area, min_zoom, max_zoom)
        invalidator = _cache(settings, engine)
        assert invalidator is not None and invalidator.cache.folder is not None
        with (_batch(settings, scheduler, workers, threads, in_process) as (client, n),
              progress_bar("seed") as progress):
            rendered, hits = seed_pyramid(engine, invalidator.cache.folder, tilesets, GRID,
                                          tiles, progress, client, n)
        invalidator.sync()  # evict what changed while we rendered, now the tiles are in place
    finally:
        engine.dispose()
    console.print(f"{rendered + hits:,} tiles in {settings.tiles.cache_dir}: "
                  f"{rendered:,} rendered, {hits:,} already cached")


@tiles_app.command()
def export(
    ctx: typer.Context,
    out: Annotated[str, typer.Argument(
        help="The archive to write, *.pmtiles or *.mbtiles: a path, or an fsspec URL "
        "(s3://...). It replaces the previous one only once complete.")],
    min_zoom: MinZoom,
    max_zoom: MaxZoom,
    bbox: BBoxOption = None,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads: Threads = None,
    in_process: InProcess = False,
) -> None:
    """Write the base map of a zoom range as a PMTiles or MBTiles archive for offline use.
    Blocks of tiles render on Dask workers (cached tiles are read, not rendered)."""
    import morecantile

    from tiles.cache import Tileset
    from tiles.export import archive_format, write_archive
    from tiles.metadata import attribution, vector_layers
    from tiles.pyramid import check_zooms, data_bbox, hilbert_order, parse_bbox, render, tiles_in

    settings: Settings = ctx.obj
    check_zooms(min_zoom, max_zoom)
    archive_format(out)
    visible = _visible(settings)
    drawn = [lyr for lyr in visible if lyr.min_zoom <= max_zoom and lyr.max_zoom >= min_zoom]
    engine = engine_for(settings)
    try:
        area = parse_bbox(bbox) if bbox else data_bbox(engine, drawn)
        tiles = tiles_in(morecantile.tms.get(GRID), area, min_zoom, max_zoom)
        metadata = {
            "name": f"{settings.city.name} base map",
            "description": f"{settings.city.name} city information model, zooms "
                           f"{min_zoom}-{max_zoom}",
            "attribution": attribution(drawn), "minzoom": min_zoom, "maxzoom": max_zoom,
            "vector_layers": vector_layers(drawn),
        }
        invalidator = _cache(settings, engine)
        live = invalidator.cache.folder if invalidator is not None else None
        name = Path(out).name
        with (_batch(settings, scheduler, workers, threads, in_process) as (client, n),
              progress_bar(f"export {name}") as step):
            rendered = render(engine, Tileset.base_map(lyr.id for lyr in visible), visible,
                              GRID, hilbert_order(tiles), step, live, client, n)
            written, size = write_archive(out, rendered, area, metadata)
    finally:
        engine.dispose()
    console.print(f"{written:,} tiles ({len(tiles) - written:,} empty left out) written to "
                  f"{out} ({size / 2**20:.1f} MiB)")


@tiles_app.command("build-3d")
def build_3d(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder of the tilesets, one sub-folder each (default: the one the "
        "server reads, STORAGE_ROOT/3dtiles).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Rewrite every tile, not only those whose features changed.")] = False,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads: Threads = None,
    in_process: InProcess = False,
) -> None:
    """Build the OGC 3D Tiles 1.1 (tileset.json + glb) of the buildings, bridges, water and
    drainage network, and ready the DEMs for terrain tiles; reruns rewrite only the tiles
    whose features changed since. Each tileset's tiles are drawn in batches on Dask workers
    (the folder must be one they all reach) and published when every batch is done."""
    from tiles.terrain import dems_within, prepare_terrain
    from tiles.threed.api import tilesets_folder
    from tiles.threed.build import build_buildings
    from tiles.threed.infrastructure import build_infrastructure

    settings: Settings = ctx.obj
    folder = out or tilesets_folder(settings.storage.root)
    engine = engine_for(settings)
    try:
        with (_batch(settings, scheduler, workers, threads, in_process) as (client, n),
              progress_bar("3D tiles") as progress):
            reports = {"buildings": build_buildings(
                engine, folder / "buildings", _share(progress, 0, 3, "buildings"),
                full=full, storage_root=settings.storage.root, client=client, threads=n)}
            reports.update(build_infrastructure(engine, folder, settings.storage.root,
                                                _share(progress, 1, 3, "infrastructure"),
                                                full=full, client=client, threads=n))
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
