"""OD matrices from OMX files (Open Matrix: HDF5 with square matrices under ``/data`` and zone
lookups under ``/lookup``), read with the ``openmatrix`` package.

Zone mapping: a lookup (OMX "mapping") lists, per row and column of the matrices, the zone it
stands for; its entries are compared with the network's zone ids as text. An integer lookup
(``openmatrix``'s ``create_mapping``) so names the TNTP zones 1..N of ``cim traffic assign``
or zones whose id is a number; a string lookup names any zone id (``grid:3_4``, an
administrative unit's id). Zones of the network the lookup leaves out get no trips. Without a
lookup, rows and columns are the network's zones in order, which only ``cim traffic assign``
accepts (a city network's zone order is the build's own). A file with several matrices or
lookups needs the one to use named; trips must be finite and not negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmatrix
import tables

from simulation.traffic.assignment import Demand
from simulation.traffic.errors import TrafficInputError


@dataclass(frozen=True, eq=False)
class OmxMatrix:
    """One matrix of an OMX file and the zone of each of its rows and columns (None when
    the file has no lookup: the network's zones in order)."""

    name: str
    trips: np.ndarray
    zones: list[str] | None


def _pick(available: list[str], wanted: str | None, what: str, plural: str, path: Path
          ) -> str | None:
    if wanted is not None:
        if wanted not in available:
            raise TrafficInputError(f"{path.name} has no {what} {wanted!r}; it has "
                                    f"{', '.join(available) or 'none'}")
        return wanted
    if len(available) > 1:
        raise TrafficInputError(f"{path.name} has {len(available)} {plural} "
                                f"({', '.join(available)}): name the one to use")
    return available[0] if available else None


def _zone_text(entries: np.ndarray) -> list[str]:
    if entries.dtype.kind in "SO":
        return [e.decode("utf-8") if isinstance(e, bytes) else str(e) for e in entries]
    if entries.dtype.kind == "U":
        return entries.tolist()
    if entries.dtype.kind in "iu":
        return [str(int(e)) for e in entries]
    if entries.dtype.kind == "f" and np.all(np.isfinite(entries) & (entries == np.round(entries))):
        return [str(int(e)) for e in entries]
    raise TrafficInputError(f"a zone lookup must hold integers or text, not {entries.dtype}")


def read_omx(path: Path, matrix: str | None = None, mapping: str | None = None) -> OmxMatrix:
    """One matrix of an OMX file (the only one, or ``matrix``) with its zone lookup (the only
    one, or ``mapping``), checked: square, finite, not negative, zones unique."""
    try:
        handle = openmatrix.open_file(str(path), "r")
    except (OSError, tables.HDF5ExtError) as exc:
        raise TrafficInputError(f"cannot read {path} as an OMX (HDF5) file: {exc}") from None
    with handle:
        if "data" not in handle.root:
            raise TrafficInputError(f"{path.name} is HDF5 but not OMX: it has no /data group")
        name = _pick(handle.list_matrices(), matrix, "matrix", "matrices", path)
        if name is None:
            raise TrafficInputError(f"{path.name} holds no matrix under /data")
        trips = np.asarray(handle[name][:], dtype=np.float64)
        lookup = _pick(handle.list_mappings(), mapping, "lookup", "lookups", path)
        zones = _zone_text(np.asarray(handle.map_entries(lookup))) if lookup else None
    if trips.ndim != 2 or trips.shape[0] != trips.shape[1]:
        raise TrafficInputError(f"{path.name}: matrix {name!r} is {trips.shape}, not square")
    bad = ~(np.isfinite(trips) & (trips >= 0))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise TrafficInputError(f"{path.name}: matrix {name!r} has {int(bad.sum())} cells that "
                                f"are negative or not finite, the first at row {row}, column "
                                f"{col} ({trips[row, col]:g})")
    if zones is not None:
        if len(zones) != trips.shape[0]:
            raise TrafficInputError(f"{path.name}: lookup {lookup!r} has {len(zones)} zones "
                                    f"for a {trips.shape[0]} × {trips.shape[0]} matrix")
        if len(set(zones)) != len(zones):
            raise TrafficInputError(f"{path.name}: lookup {lookup!r} names a zone twice")
    return OmxMatrix(name, trips, zones)


def demand(matrix: OmxMatrix, zone_ids: list[str], positional: bool) -> Demand:
    """The matrix on the network's zones (``zone_ids``, in order). Without a lookup the
    matrix must be the network's size and ``positional`` allowed."""
    n = len(zone_ids)
    if matrix.zones is None:
        if not positional:
            raise TrafficInputError(f"matrix {matrix.name!r} has no zone lookup: a city "
                                    "network's zones need one (zone ids, see `cim traffic "
                                    "network`)")
        if matrix.trips.shape[0] != n:
            raise TrafficInputError(f"matrix {matrix.name!r} is {matrix.trips.shape[0]} × "
                                    f"{matrix.trips.shape[0]} but the network has {n} zones")
        return Demand(matrix.trips)
    index = {zone: i for i, zone in enumerate(zone_ids)}
    unknown = [zone for zone in matrix.zones if zone not in index]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise TrafficInputError(f"{len(unknown)} zones of the lookup are not zones of the "
                                f"network: {shown}")
    at = np.array([index[zone] for zone in matrix.zones], dtype=np.int64)
    trips = np.zeros((n, n))
    trips[np.ix_(at, at)] = matrix.trips
    return Demand(trips)


def od_rows(matrix: OmxMatrix) -> list[tuple[str, str, float]]:
    """The non-zero cells as (origin zone, destination zone, trips) rows, the scenario's
    imported OD form (zone ids from the lookup)."""
    if matrix.zones is None:
        raise TrafficInputError(f"matrix {matrix.name!r} has no zone lookup: a city "
                                "network's zones need one (zone ids, see `cim traffic "
                                "network`)")
    origin, dest = np.nonzero(matrix.trips)
    return [(matrix.zones[i], matrix.zones[j], float(matrix.trips[i, j]))
            for i, j in zip(origin.tolist(), dest.tolist(), strict=True)]
