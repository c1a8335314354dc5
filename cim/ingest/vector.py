"""Vector files through GDAL (pyogrio): GeoPackage, GeoJSON, zipped Shapefile, FlatGeobuf."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from cim.ingest.errors import ReaderError
from cim.ingest.formats import Format
from cim.limits import check_archive
from cim.settings import LimitsSettings


def _gdal_path(path: Path, fmt: Format) -> str:
    # Read zips in place through GDAL's virtual file system: nothing is unpacked on disk.
    if fmt is Format.shapefile and path.suffix.lower() == ".zip":
        check_archive(path, LimitsSettings())  # zip bombs: refused before GDAL reads them
        return f"/vsizip/{path.resolve()}"
    return str(path)


def read_vector(path: Path, fmt: Format, source_layer: str | None = None) -> gpd.GeoDataFrame:
    """All features of one layer; a file with several layers needs ``source_layer``."""
    target = _gdal_path(path, fmt)
    try:
        layers = pyogrio.list_layers(target)
        names = [str(name) for name in layers[:, 0]]
        if source_layer is None and len(names) > 1:
            raise ReaderError(
                f"{path.name} holds {len(names)} layers ({', '.join(names)}): "
                "choose one with --source-layer"
            )
        if source_layer is not None and source_layer not in names:
            raise ReaderError(
                f"{path.name} has no layer {source_layer!r}; it has: {', '.join(names)}"
            )
        if not names:
            raise ReaderError(f"{path.name} holds no vector layer")
        return pyogrio.read_dataframe(target, layer=source_layer or names[0], use_arrow=True)
    except (DataSourceError, DataLayerError) as exc:
        raise ReaderError(f"{path.name}: cannot read as {fmt}: {exc}") from None
