"""The TNTP formats of the public test networks (bstabler/TransportationNetworks).

A ``_net.tntp`` file has ``<KEY> value`` metadata up to ``<END OF METADATA>``, ``~`` comment
lines, then one link a line: init node, term node, capacity, length, free-flow time, BPR b,
power, speed, toll, link type, each line ending in ``;``. Nodes are numbered from 1, zones are
nodes 1..``<NUMBER OF ZONES>``, and nodes below ``<FIRST THRU NODE>`` may start or end a trip but
not be passed through. ``_trips.tntp`` lists ``Origin o`` blocks of ``d : trips;`` pairs;
``_flow.tntp`` a ``From To Volume Cost`` table. Times are read as minutes, the convention of
these files. Every malformed line is reported with its file and line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulation.traffic.assignment import Demand, Network, Result
from simulation.traffic.errors import TrafficInputError

_META = re.compile(r"^\s*<([^>]+)>\s*(.*?)\s*$")
_ORIGIN = re.compile(r"^\s*Origin\s+(\S+)\s*$", re.IGNORECASE)
_PAIR = re.compile(r"^\s*(\S+)\s*:\s*(\S+)\s*$")
# The BPR columns are required; speed, toll and link type are not used by the assignment.
_REQUIRED = ("init_node", "term_node", "capacity", "length", "free_flow_time", "b", "power")
_OPTIONAL = ("speed", "toll", "link_type")


@dataclass(frozen=True)
class Flows:
    """A flow file's rows: 1-based nodes, volume and cost per link."""

    init_node: np.ndarray
    term_node: np.ndarray
    volume: np.ndarray
    cost: np.ndarray


def _fail(path: Path, line: int | None, message: str) -> TrafficInputError:
    where = f"{path.name}, line {line}" if line else path.name
    return TrafficInputError(f"{where}: {message}")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise TrafficInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _metadata(path: Path, lines: list[str]) -> tuple[dict[str, str], int]:
    """The metadata and the index of the first line after ``<END OF METADATA>``."""
    meta: dict[str, str] = {}
    for index, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("~"):
            continue
        match = _META.match(line)
        if not match:
            raise _fail(path, index + 1, "expected <KEY> value metadata before "
                        "<END OF METADATA>; is this a TNTP file?")
        key = match.group(1).strip().upper()
        if key == "END OF METADATA":
            return meta, index + 1
        meta[key] = match.group(2)
    raise _fail(path, None, "no <END OF METADATA> line; is this a TNTP file?")


def _int_meta(path: Path, meta: dict[str, str], key: str, default: int | None = None) -> int:
    if key not in meta:
        if default is None:
            raise _fail(path, None, f"the metadata lacks <{key}>: is this the right kind of "
                        "TNTP file?")
        return default
    try:
        return int(float(meta[key]))
    except ValueError:
        raise _fail(path, None, f"<{key}> is {meta[key]!r}, not a number") from None


def _float_meta(path: Path, meta: dict[str, str], key: str) -> float:
    try:
        return float(meta.get(key, "0") or 0)
    except ValueError:
        raise _fail(path, None, f"<{key}> is {meta[key]!r}, not a number") from None


def read_net(path: Path, *, length_km: float = 1.0, length_cost: float | None = None,
             toll_cost: float | None = None) -> Network:
    """A network from a ``_net.tntp`` file.

    ``length_km`` converts the file's length unit to km (1.609344 for miles) for vehicle-km.
    The generalised cost of a link is its travel time plus ``length_cost`` per length unit
    plus ``toll_cost`` per toll unit, in minutes; unset, they come from the file's
    ``<DISTANCE FACTOR>`` and ``<TOLL FACTOR>`` (0 where absent, as in most files today).
    """
    path = Path(path)
    lines = _read_lines(path)
    meta, start = _metadata(path, lines)
    zones = _int_meta(path, meta, "NUMBER OF ZONES")
    nodes = _int_meta(path, meta, "NUMBER OF NODES")
    links = _int_meta(path, meta, "NUMBER OF LINKS")
    first_thru = _int_meta(path, meta, "FIRST THRU NODE", default=1)
    if length_cost is None:
        length_cost = _float_meta(path, meta, "DISTANCE FACTOR")
    if toll_cost is None:
        toll_cost = _float_meta(path, meta, "TOLL FACTOR")
    if not 0 < zones <= nodes:
        raise _fail(path, None, f"{zones} zones for {nodes} nodes: zones are nodes 1..zones")

    rows: list[list[float]] = []
    numbers: list[int] = []
    for index in range(start, len(lines)):
        text = lines[index].split("~", 1)[0].strip().rstrip(";").strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) < len(_REQUIRED):
            raise _fail(path, index + 1, f"{len(fields)} fields; a link needs at least "
                        f"{', '.join(_REQUIRED)}")
        try:
            values = [float(v) for v in fields[: len(_REQUIRED) + len(_OPTIONAL)]]
        except ValueError:
            raise _fail(path, index + 1, f"a field is not a number: {text!r}") from None
        rows.append(values + [0.0] * (len(_REQUIRED) + len(_OPTIONAL) - len(values)))
        numbers.append(index + 1)
    if len(rows) != links:
        raise _fail(path, None, f"<NUMBER OF LINKS> says {links} but the file has {len(rows)}")
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(_REQUIRED) + len(_OPTIONAL))
    init, term = table[:, 0], table[:, 1]
    for column, name in ((init, "init node"), (term, "term node")):
        bad = np.flatnonzero((column != np.round(column)) | (column < 1) | (column > nodes))
        if bad.size:
            raise _fail(path, numbers[bad[0]], f"{name} {column[bad[0]]:g} is not a node "
                        f"1..{nodes}")
    checks = ((table[:, 2] <= 0, "capacity must be positive"),
              (table[:, 3] < 0, "length must not be negative"),
              (table[:, 4] < 0, "free-flow time must not be negative"),
              (table[:, 5] < 0, "BPR b must not be negative"),
              (table[:, 6] < 0, "BPR power must not be negative"),
              (~np.isfinite(table).all(axis=1), "a value is not finite"))
    for bad, message in checks:
        if bad.any():
            raise _fail(path, numbers[int(np.argmax(bad))], message)
    return Network(
        num_nodes=nodes,
        init_node=init.astype(np.int64) - 1,
        term_node=term.astype(np.int64) - 1,
        capacity=table[:, 2].copy(),
        free_flow_time=table[:, 4].copy(),
        alpha=table[:, 5].copy(),
        beta=table[:, 6].copy(),
        length_km=table[:, 3] * length_km,
        zone_nodes=np.arange(zones, dtype=np.int64),
        through_zones=first_thru <= 1,
        fixed_cost=table[:, 3] * length_cost + table[:, 8] * toll_cost,
    )


def read_trips(path: Path, zones: int | None = None) -> Demand:
    """The OD matrix of a ``_trips.tntp`` file; ``zones`` checks it against the network."""
    path = Path(path)
    lines = _read_lines(path)
    meta, start = _metadata(path, lines)
    declared = _int_meta(path, meta, "NUMBER OF ZONES")
    if zones is not None and declared != zones:
        raise _fail(path, None, f"{declared} zones but the network has {zones}")
    matrix = np.zeros((declared, declared))
    origin: int | None = None
    for index in range(start, len(lines)):
        text = lines[index].split("~", 1)[0].strip()
        if not text:
            continue
        header = _ORIGIN.match(text)
        if header:
            origin = _zone(path, index + 1, header.group(1), declared, "origin")
            continue
        if origin is None:
            raise _fail(path, index + 1, "trips before the first 'Origin' line")
        for pair in filter(None, (p.strip() for p in text.split(";"))):
            match = _PAIR.match(pair)
            if not match:
                raise _fail(path, index + 1, f"expected 'destination : trips;', got {pair!r}")
            dest = _zone(path, index + 1, match.group(1), declared, "destination")
            try:
                trips = float(match.group(2))
            except ValueError:
                raise _fail(path, index + 1, f"trips {match.group(2)!r} is not a number") \
                    from None
            if not np.isfinite(trips) or trips < 0:
                raise _fail(path, index + 1, f"trips {trips:g} must be a finite number >= 0")
            matrix[origin - 1, dest - 1] += trips
    total = meta.get("TOTAL OD FLOW")
    if total is not None:
        declared_total = float(total)
        if not np.isclose(matrix.sum(), declared_total, rtol=1e-6, atol=1e-6):
            raise _fail(path, None, f"<TOTAL OD FLOW> says {declared_total:g} but the trips "
                        f"add up to {matrix.sum():g}")
    return Demand(matrix)


def _zone(path: Path, line: int, text: str, zones: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _fail(path, line, f"{what} {text!r} is not a zone number") from None
    if not 1 <= value <= zones:
        raise _fail(path, line, f"{what} {value} is not a zone 1..{zones}")
    return value


def read_flow(path: Path) -> Flows:
    """A ``_flow.tntp`` file (the best-known solutions of the test networks)."""
    path = Path(path)
    lines = _read_lines(path)
    rows: list[list[float]] = []
    for index, line in enumerate(lines):
        text = line.split("~", 1)[0].strip().rstrip(";")
        if not text or (not rows and text.split()[0].lower() == "from"):
            continue
        fields = text.split()
        try:
            if len(fields) != 4:
                raise ValueError
            rows.append([float(v) for v in fields])
        except ValueError:
            raise _fail(path, index + 1, f"expected 'from to volume cost', got {text!r}") \
                from None
    if not rows:
        raise _fail(path, None, "no flows")
    table = np.asarray(rows)
    return Flows(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64),
                 table[:, 2].copy(), table[:, 3].copy())


def write_flow(path: Path, network: Network, result: Result) -> None:
    """Link volumes and costs as a ``_flow.tntp`` table, or as CSV when ``path`` ends in .csv.

    The CSV has ``init_node,term_node,flow,time,voc`` with the network's 1-based nodes.
    """
    path = Path(path)
    init, term = network.init_node + 1, network.term_node + 1
    if path.suffix.lower() == ".csv":
        header = "init_node,term_node,flow,time,voc"
        rows = zip(init, term, result.volume, result.time, result.voc, strict=True)
        body = [f"{a},{b},{float(v)!r},{float(t)!r},{float(c)!r}" for a, b, v, t, c in rows]
    else:
        header = "From \tTo \tVolume \tCost "
        rows4 = zip(init, term, result.volume, result.cost, strict=True)
        body = [f"{a} \t{b} \t{float(v)!r} \t{float(c)!r} " for a, b, v, c in rows4]
    try:
        path.write_text("\n".join([header, *body]) + "\n")
    except OSError as exc:
        raise TrafficInputError(f"cannot write {path}: {exc.strerror or exc}") from None
