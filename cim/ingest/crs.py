"""Which CRS an input is in: the file's own, or ``--crs`` when the file has none."""

from __future__ import annotations

import warnings

from pyproj import CRS
from pyproj.exceptions import CRSError as PyprojCRSError

from cim.ingest.errors import CrsError

GCJ02 = "GCJ02"
"""Pseudo-CRS name for GCJ-02 lon/lat (Chinese web maps); converted to WGS84 on import."""


def parse_crs(text: str) -> CRS:
    """A CRS from ``EPSG:4547``, ``4547``, a URN/URL or WKT; a clear error otherwise."""
    value = text.strip()
    if value.isdigit():
        value = f"EPSG:{value}"
    try:
        return CRS.from_user_input(value)
    except PyprojCRSError as exc:
        raise CrsError(f"unknown CRS {text!r}: {exc}") from None


def horizontal(crs: CRS) -> CRS:
    """The horizontal part of a compound CRS (EPSG:4547 + height, say)."""
    return crs.sub_crs_list[0] if crs.is_compound else crs


def resolve_crs(file_crs: CRS | None, given: str | None) -> tuple[CRS, list[str]]:
    """The CRS to read the input in, and warnings to report.

    A file without CRS needs ``--crs``; ``--crs`` on a file that declares another CRS is
    refused, because one of the two is wrong and guessing would misplace every feature.
    """
    notes: list[str] = []
    if given is None:
        if file_crs is None:
            raise CrsError(
                "the input declares no coordinate reference system: give it with --crs "
                "(for example --crs EPSG:4547 for CGCS2000 Gauss-Kruger CM 114E)"
            )
        return horizontal(file_crs), notes
    crs = horizontal(parse_crs(given))
    if file_crs is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same = horizontal(file_crs).equals(crs, ignore_axis_order=True)
        if not same:
            raise CrsError(
                f"--crs {given} contradicts the CRS the file declares "
                f"({horizontal(file_crs).to_string()}); reproject the file or drop --crs"
            )
        notes.append(f"--crs {given} matches the file's own CRS")
    return crs, notes


def crs_label(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()
