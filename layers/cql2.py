"""CQL2 filters (OGC API - Features Part 3) compiled to SQL over a layer's queryables.

The ``cql2`` package parses CQL2 text into the JSON form (CQL2 JSON is read as JSON); this
module turns that tree into a SQL condition with bound parameters. Names resolve through the layer's
queryables to quoted catalog identifiers, every literal is a bound parameter, and geometry
literals arrive as WKB in EPSG:4326 after shapely has checked (and pyproj moved) them.
Anything it does not understand is an :class:`InvalidParameter`, never a database error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import cql2
import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import box, shape
from sqlalchemy.exc import DBAPIError

from cim.schema.models import SRID
from layers.crs import Crs
from layers.errors import InvalidParameter
from layers.queryables import Queryables

LANGUAGES = ("cql2-text", "cql2-json")
MAX_FILTER_CHARS = 64 * 1024
MAX_DEPTH = 32
MAX_COORDINATES = 10_000
# The Rust parser recurses per nesting level and per operator; on a thread's default stack
# it crashed the process at a few thousand levels (measured), so text is measured first.
MAX_TEXT_TOKENS = 1_000
MAX_TEXT_PARENS = 32
_GEOMETRY_WORDS = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING",
                   "MULTIPOLYGON", "GEOMETRYCOLLECTION", "BBOX"}
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+"
                    r"|[A-Za-z_][A-Za-z0-9_:.]*|<>|<=|>=|\S")


@dataclass(frozen=True)
class SqlFilter:
    """A boolean SQL expression over the relation aliased ``t``, and its parameters."""

    sql: str
    params: dict[str, Any]


def parse_filter(source: str, language: str, max_nodes: int) -> Any:
    """The filter's CQL2 JSON tree, refused (400) when malformed or too complex."""
    if len(source) > MAX_FILTER_CHARS:
        raise InvalidParameter(f"filter: longer than {MAX_FILTER_CHARS} characters")
    if "\x00" in source:
        raise InvalidParameter("filter: a NUL character")
    if language == "cql2-text":
        _measure_text(source, max_nodes)
        try:
            tree = cql2.parse_text(source).to_json()
        except (cql2.ParseError, cql2.ValidationError) as exc:
            message = " ".join(str(exc).split())[:300]
            raise InvalidParameter(f"filter is not valid cql2-text: {message}") from None
    else:
        tree = _load_json(source)
    nodes = _count(tree, 0)
    if nodes > max_nodes:
        raise InvalidParameter(f"filter: too complex ({nodes} nodes, at most {max_nodes})")
    return tree


def _too_complex() -> InvalidParameter:
    return InvalidParameter(f"filter: too complex (nested more than {MAX_TEXT_PARENS} deep "
                            f"or more than {MAX_TEXT_TOKENS} terms)")


def _measure_text(source: str, max_nodes: int) -> None:
    """Refuse text whose nesting or length could exhaust the parser's stack. Coordinates
    inside geometry literals are not terms: they are bounded by MAX_COORDINATES later."""
    depth, terms, limit = 0, 0, min(MAX_TEXT_TOKENS, 4 * max_nodes)
    geometry_at: int | None = None  # parenthesis depth where a geometry literal opened
    pending = False
    for match in _TOKEN.finditer(source):
        token = match.group()
        if token == "(":
            depth += 1
            if depth > MAX_TEXT_PARENS:
                raise _too_complex()
            if pending and geometry_at is None:
                geometry_at = depth
            pending = False
        elif token == ")":
            if geometry_at == depth:
                geometry_at = None
            depth -= 1
        elif geometry_at is None:
            word = token.upper()
            pending = word in _GEOMETRY_WORDS or (pending and word in ("Z", "M", "ZM"))
            terms += token != ","
            if terms > limit:
                raise _too_complex()


def _load_json(source: str) -> Any:
    # Python's reader, not cql2's: that one moves some coordinates by a bit in the last place,
    # enough to break S_EQUALS against a stored geometry.
    try:
        return json.loads(source)
    except RecursionError:
        raise _too_complex() from None
    except ValueError as exc:
        raise InvalidParameter(f"filter is not valid JSON: {exc}") from None


def _count(node: Any, depth: int) -> int:
    """Operators, names and literals of the tree (a geometry or an instant is one)."""
    if depth > MAX_DEPTH:
        raise InvalidParameter(f"filter: too complex (nested deeper than {MAX_DEPTH})")
    if isinstance(node, list):
        return sum(_count(item, depth + 1) for item in node)
    if isinstance(node, dict) and "op" in node:
        return 1 + _count(node.get("args"), depth + 1)
    if isinstance(node, dict) and "interval" in node:
        return 1 + _count(node["interval"], depth + 1)
    return 1


@contextmanager
def evaluation_errors(filtered: bool) -> Iterator[None]:
    """What PostgreSQL refuses while evaluating a filter, as a 400: a data exception or a
    GEOS error on a literal the checks above let through."""
    try:
        yield
    except DBAPIError as exc:
        state = getattr(exc.orig, "sqlstate", None) or ""
        if not filtered or not (state.startswith("22") or state == "XX000"):
            raise
        reason = str(exc.orig).splitlines()[0][:200]
        raise InvalidParameter(f"filter could not be evaluated: {reason}") from None


def compile_filter(tree: Any, queryables: Queryables, crs: Crs) -> SqlFilter:
    """``tree`` (CQL2 JSON) as SQL; ``crs`` is the filter-crs of geometry literals."""
    compiler = _Compiler(queryables, crs)
    return SqlFilter(compiler.predicate(tree), compiler.params)


@dataclass(frozen=True)
class _Value:
    sql: str
    kind: str
    """``string``, ``number``, ``boolean``, ``timestamp``, ``date`` or ``geometry``."""
    literal: bool = False


_COMPARISONS = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_SPATIAL = {"s_intersects": "ST_Intersects", "s_within": "ST_Within",
            "s_contains": "ST_Contains", "s_disjoint": "ST_Disjoint",
            "s_crosses": "ST_Crosses", "s_touches": "ST_Touches",
            "s_overlaps": "ST_Overlaps", "s_equals": "ST_Equals"}
# CQL2's temporal functions (Allen's relations) over intervals [s1, e1] and [s2, e2];
# an instant is an interval whose ends coincide.
_TEMPORAL: dict[str, Callable[[str, str, str, str], str]] = {
    "t_after": lambda s1, e1, s2, e2: f"{s1} > {e2}",
    "t_before": lambda s1, e1, s2, e2: f"{e1} < {s2}",
    "t_contains": lambda s1, e1, s2, e2: f"{s1} < {s2} AND {e1} > {e2}",
    "t_disjoint": lambda s1, e1, s2, e2: f"({s1} > {e2} OR {e1} < {s2})",
    "t_during": lambda s1, e1, s2, e2: f"{s1} > {s2} AND {e1} < {e2}",
    "t_equals": lambda s1, e1, s2, e2: f"{s1} = {s2} AND {e1} = {e2}",
    "t_finishedby": lambda s1, e1, s2, e2: f"{s1} < {s2} AND {e1} = {e2}",
    "t_finishes": lambda s1, e1, s2, e2: f"{s1} > {s2} AND {e1} = {e2}",
    "t_intersects": lambda s1, e1, s2, e2: f"{s1} <= {e2} AND {e1} >= {s2}",
    "t_meets": lambda s1, e1, s2, e2: f"{e1} = {s2}",
    "t_metby": lambda s1, e1, s2, e2: f"{s1} = {e2}",
    "t_overlappedby": lambda s1, e1, s2, e2: f"{s1} > {s2} AND {s1} < {e2} AND {e1} > {e2}",
    "t_overlaps": lambda s1, e1, s2, e2: f"{s1} < {s2} AND {e1} > {s2} AND {e1} < {e2}",
    "t_startedby": lambda s1, e1, s2, e2: f"{s1} = {s2} AND {e1} > {e2}",
    "t_starts": lambda s1, e1, s2, e2: f"{s1} = {s2} AND {e1} < {e2}",
}
_ORDERED = {"number", "string", "timestamp", "date"}
_CASTS = {"string": "text", "number": "double precision", "boolean": "boolean",
          "timestamp": "timestamptz", "date": "date"}
_OPEN = {"start": "CAST('-infinity' AS timestamptz)", "end": "CAST('infinity' AS timestamptz)"}


@cache
def _to_storage(srid: int) -> Transformer:
    return Transformer.from_crs(srid, SRID, always_xy=True)


class _Compiler:
    def __init__(self, queryables: Queryables, crs: Crs) -> None:
        self.queryables = queryables
        self.crs = crs
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, cast: str) -> str:
        # A prefix no other condition of the feature query uses.
        name = f"cql_{len(self.params)}"
        self.params[name] = value
        return f"CAST(:{name} AS {cast})"

    # -- predicates ------------------------------------------------------------------------

    def predicate(self, node: Any) -> str:
        if isinstance(node, bool):
            return "TRUE" if node else "FALSE"
        if not isinstance(node, dict) or "op" not in node:
            raise InvalidParameter(f"filter: {_show(node)} is not a condition")
        op, args = str(node["op"]).lower(), node.get("args")
        if not isinstance(args, list):
            raise InvalidParameter(f"filter: {op} needs a list of arguments")
        if op in ("and", "or"):
            if len(args) < 2:
                raise InvalidParameter(f"filter: {op} needs at least two conditions")
            return "(" + f" {op.upper()} ".join(self.predicate(a) for a in args) + ")"
        if op == "not":
            (condition,) = self.arity(op, args, 1)
            return f"(NOT {self.predicate(condition)})"
        if op in _COMPARISONS:
            left, right = (self.value(a) for a in self.arity(op, args, 2))
            self.comparable(op, left, right)
            return f"{left.sql} {_COMPARISONS[op]} {right.sql}"
        if op == "like":
            return self.like(*self.arity(op, args, 2))
        if op == "between":
            subject, low, high = (self.value(a) for a in self.arity(op, args, 3))
            self.comparable(op, subject, low)
            self.comparable(op, subject, high)
            return f"{subject.sql} BETWEEN {low.sql} AND {high.sql}"
        if op == "in":
            return self.within_list(*self.arity(op, args, 2))
        if op == "isnull":
            (subject,) = self.arity(op, args, 1)
            return f"{self.value(subject).sql} IS NULL"
        if op in _SPATIAL:
            left, right = (self.value(a) for a in self.arity(op, args, 2))
            if left.kind != "geometry" or right.kind != "geometry":
                raise InvalidParameter(f"filter: {op} compares two geometries")
            return f"{_SPATIAL[op]}({left.sql}, {right.sql})"
        if op in _TEMPORAL:
            first, second = (self.period(a) for a in self.arity(op, args, 2))
            return "(" + _TEMPORAL[op](*first, *second) + ")"
        raise InvalidParameter(f"filter: the operator {node['op']!r} is not supported")

    @staticmethod
    def arity(op: str, args: list[Any], count: int) -> list[Any]:
        if len(args) != count:
            raise InvalidParameter(f"filter: {op} takes {count} arguments, not {len(args)}")
        return args

    @staticmethod
    def comparable(op: str, left: _Value, right: _Value) -> None:
        kinds = {left.kind, right.kind}
        if kinds <= {"timestamp", "date"} or len(kinds) == 1:
            if "geometry" in kinds or (op not in ("=", "<>", "in") and not kinds <= _ORDERED):
                raise InvalidParameter(f"filter: {op} cannot compare {left.kind} values")
            return
        raise InvalidParameter(f"filter: {op} cannot compare a {left.kind} "
                               f"with a {right.kind}")

    def like(self, subject: Any, pattern: Any) -> str:
        value, casei = self.value(subject), _is_casei(pattern)
        text = pattern["args"][0] if casei else pattern
        if value.kind != "string" or not isinstance(text, str):
            raise InvalidParameter("filter: like matches a text value against a text pattern")
        if re.search(r"(?<!\\)(?:\\\\)*\\$", text):
            raise InvalidParameter("filter: a like pattern cannot end with an escape (\\)")
        bound = self.value(pattern)
        return f"{value.sql} LIKE {bound.sql}"

    def within_list(self, subject: Any, items: Any) -> str:
        value = self.value(subject)
        if not isinstance(items, list) or not items:
            raise InvalidParameter("filter: in needs a non-empty list")
        members = [self.value(item) for item in items]
        for member in members:
            self.comparable("in", value, member)
        return f"{value.sql} IN ({', '.join(m.sql for m in members)})"

    # -- values ----------------------------------------------------------------------------

    def value(self, node: Any) -> _Value:
        if isinstance(node, bool):
            return _Value(self.bind(node, "boolean"), "boolean", literal=True)
        if isinstance(node, int | float):
            return _Value(self.bind(_number(node), _CASTS["number"]), "number", literal=True)
        if isinstance(node, str):
            return _Value(self.bind(_text(node), "text"), "string", literal=True)
        if isinstance(node, dict):
            if "property" in node:
                field = self.queryables.get(str(node["property"]))
                kind = "number" if field.kind in ("integer", "number") else field.kind
                return _Value(f't."{field.column}"', kind)
            if "timestamp" in node:
                moment = _timestamp(node["timestamp"])
                return _Value(self.bind(moment, "timestamptz"), "timestamp", literal=True)
            if "date" in node:
                return _Value(self.bind(_date(node["date"]), "date"), "date", literal=True)
            if "bbox" in node or "type" in node:
                return _Value(self.geometry(node), "geometry", literal=True)
            if _is_casei(node):
                inner = self.value(node["args"][0])
                if inner.kind != "string":
                    raise InvalidParameter("filter: casei applies to text")
                return _Value(f"lower({inner.sql})", "string", inner.literal)
            if "op" in node:
                raise InvalidParameter(f"filter: the function or operator {node['op']!r} is "
                                       "not supported here")
        if node is None:
            raise InvalidParameter("filter: NULL is only tested with IS NULL")
        raise InvalidParameter(f"filter: {_show(node)} is not a value")

    def period(self, node: Any) -> tuple[str, str]:
        """A temporal argument as the SQL of its start and end (equal for an instant)."""
        if isinstance(node, dict) and "interval" in node:
            ends = node["interval"]
            if not isinstance(ends, list) or len(ends) != 2:
                raise InvalidParameter("filter: an interval has a start and an end")
            return self.interval_end(ends[0], "start"), self.interval_end(ends[1], "end")
        value = self.value(node)
        if value.kind not in ("timestamp", "date"):
            raise InvalidParameter(f"filter: a temporal function needs instants or intervals, "
                                   f"not a {value.kind}")
        return value.sql, value.sql

    def interval_end(self, node: Any, end: str) -> str:
        if node == "..":
            return _OPEN[end]
        if isinstance(node, str):
            instant = _date(node) if len(node) == 10 else _timestamp(node)
            return self.bind(instant, "timestamptz" if isinstance(instant, datetime) else "date")
        value = self.value(node)
        if value.kind not in ("timestamp", "date"):
            raise InvalidParameter(f"filter: an interval ends at instants, not a {value.kind}")
        # An open end of a stored interval (a current version's valid_to) is unbounded.
        return value.sql if value.literal else f"COALESCE({value.sql}, {_OPEN[end]})"

    def geometry(self, node: dict[str, Any]) -> str:
        """A geometry literal given in the filter-crs, as EPSG:4326 WKB."""
        try:
            if "bbox" in node:
                geometry = self.envelope(node["bbox"])
            else:
                geometry = shapely.force_2d(shape(node))
                if self.crs.northing_first:
                    geometry = shapely.transform(geometry, lambda xy: xy[:, ::-1])
        except InvalidParameter:
            raise
        except Exception as exc:  # shapely's errors on malformed GeoJSON vary by type
            raise InvalidParameter(f"filter: not a valid geometry literal ({exc})") from None
        if isinstance(geometry, shapely.GeometryCollection) and len(geometry.geoms) > 0:
            # Overlapping members stop GEOS's predicates (a TopologyException); their union
            # is the same point set, so every predicate answers the same.
            geometry = shapely.union_all(geometry.geoms)
        if shapely.get_num_coordinates(geometry) > MAX_COORDINATES:
            raise InvalidParameter(f"filter: a geometry with more than {MAX_COORDINATES} "
                                   "coordinates")
        if self.crs.srid != SRID:
            transformer = _to_storage(self.crs.srid)
            geometry = shapely.transform(
                geometry, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
        if not np.isfinite(shapely.get_coordinates(geometry)).all():
            raise InvalidParameter("filter: a geometry literal outside its CRS")
        if not shapely.is_valid(geometry):
            raise InvalidParameter("filter: an invalid geometry literal "
                                   f"({shapely.is_valid_reason(geometry)})")
        return f"ST_GeomFromWKB({self.bind(shapely.to_wkb(geometry), 'bytea')}, {SRID})"

    def envelope(self, numbers: Any) -> shapely.Geometry:
        if (not isinstance(numbers, list) or len(numbers) not in (4, 6)
                or not all(isinstance(n, int | float) for n in numbers)):
            raise InvalidParameter("filter: a bbox has four (or six) numbers")
        numbers = [_number(n) for n in numbers]
        if len(numbers) == 6:
            numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
        if self.crs.northing_first:
            numbers = [numbers[1], numbers[0], numbers[3], numbers[2]]
        xmin, ymin, xmax, ymax = numbers
        if xmin > xmax or ymin > ymax:
            raise InvalidParameter("filter: a bbox's lower corner comes first (bboxes across "
                                   "the antimeridian are not supported)")
        envelope = box(xmin, ymin, xmax, ymax)
        if self.crs.srid != SRID:  # edges stay close to straight once moved
            envelope = shapely.segmentize(envelope, max(xmax - xmin, ymax - ymin, 1e-9) / 16)
        return envelope


def _is_casei(node: Any) -> bool:
    return (isinstance(node, dict) and str(node.get("op", "")).lower() == "casei"
            and isinstance(node.get("args"), list) and len(node["args"]) == 1)


def _number(value: int | float) -> float:
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidParameter("filter: numbers must be finite")
    return number


def _text(value: str) -> str:
    if "\x00" in value:
        raise InvalidParameter("filter: text cannot hold a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidParameter("filter: text that is not valid Unicode") from None
    return value


def _timestamp(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"filter: {_show(value)} is not an RFC 3339 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _date(value: Any) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"filter: {_show(value)} is not a date (YYYY-MM-DD)") from None


def _show(node: Any) -> str:
    shown = json.dumps(node)
    return shown if len(shown) <= 80 else shown[:77] + "..."
