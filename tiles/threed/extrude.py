"""Building meshes from footprints: LOD1 blocks and LOD2 pitched roofs, vectorised.

Every footprint part is moved into its building's own metric frame (east/north metres about
the building's centre, an affine map of lon/lat, so straight edges stay straight and the
way back is exact). There a roof is a set of *pieces*, planar polygons with a plane each:
the footprint itself for a flat roof, or the footprint cut by the facets of a gabled, hipped
or pyramidal roof laid over its oriented minimum rectangle. Pieces are triangulated (a fan
for convex ones, earcut for the rest), their edges on the footprint's boundary become walls
up to the roof, and a building lifted off the ground (``min_height`` > 0) gets a floor.
Vertices then go to ECEF; faces are flat-shaded with outward normals.
"""

from __future__ import annotations

from dataclasses import dataclass

import mapbox_earcut
import numpy as np
import shapely

from tiles.threed.geodesy import enu_axes, metres_per_degree, to_ecef

FLAT, GABLED, HIPPED, PYRAMIDAL = 0, 1, 2, 3
ROOF_SHAPES = {"gabled": GABLED, "hipped": HIPPED, "half-hipped": HIPPED,
               "pyramidal": PYRAMIDAL}
"""Roof shapes (OSM's ``roof:shape`` words) drawn as such; any other is drawn flat."""
ON_EDGE_M = 1e-3
"""A piece's edge this close to the footprint's boundary is a wall."""
MIN_EDGE_M = 1e-3
MIN_AREA_M2 = 1e-6


@dataclass(frozen=True)
class Footprints:
    """The buildings of one tile: MultiPolygons in lon/lat and heights above the ellipsoid."""

    geoms: np.ndarray
    bottom: np.ndarray
    top: np.ndarray
    roof: np.ndarray
    """Roof shape codes (FLAT, GABLED, ...)."""
    roof_height: np.ndarray
    """Ridge above the eaves, m; NaN where unknown (drawn flat)."""
    floor: np.ndarray
    """Whether to close the building underneath (it does not stand on the ground)."""


@dataclass(frozen=True)
class Mesh:
    positions: np.ndarray
    """(n, 3) ECEF metres, float64: the tile subtracts its centre before narrowing."""
    normals: np.ndarray
    feature: np.ndarray
    """(n,) the index of each vertex's building in the tile."""
    triangles: np.ndarray
    """(m, 3) vertex indices, counter-clockwise seen from outside."""

    @staticmethod
    def empty() -> Mesh:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros(0, np.int64),
                    np.zeros((0, 3), np.uint32))


def roof_codes(shapes: np.ndarray) -> np.ndarray:
    return np.array([ROOF_SHAPES.get(str(s).lower(), FLAT) if s else FLAT for s in shapes],
                    dtype=np.int8)


def _planes_and_pieces(parts: np.ndarray, owner: np.ndarray, fp: Footprints
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Roof pieces, the part each belongs to, and their planes z = z0 + gx x + gy y."""
    top = fp.top[owner]
    rise = np.minimum(fp.roof_height[owner], top - fp.bottom[owner])
    shape = np.where(np.nan_to_num(rise) > 0, fp.roof[owner], FLAT)
    flat = np.flatnonzero(shape == FLAT)
    pieces = [parts[flat]]
    of_part = [flat]
    planes = [np.column_stack([top[flat], np.zeros((len(flat), 2))])]
    pitched = np.flatnonzero(shape != FLAT)
    if len(pitched):
        facets, facet_part, facet_planes = _facets(parts[pitched], shape[pitched],
                                                   top[pitched], rise[pitched])
        cut = shapely.intersection(parts[pitched][facet_part], facets)
        pieces_cut, source = shapely.get_parts(cut, return_index=True)
        keep = (shapely.get_type_id(pieces_cut) == 3) & (shapely.area(pieces_cut) > MIN_AREA_M2)
        pieces.append(shapely.orient_polygons(pieces_cut[keep]))
        of_part.append(pitched[facet_part[source[keep]]])
        planes.append(facet_planes[source[keep]])
    return (np.concatenate(pieces), np.concatenate(of_part), np.concatenate(planes),
            shape != FLAT)


def _facets(parts: np.ndarray, shape: np.ndarray, top: np.ndarray, rise: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The roof facets over each part's oriented minimum rectangle, as polygons with their
    part index and plane. A facet falls from the ridge at ``top`` to the eaves at
    ``top - rise`` on the rectangle's edge: z = top - s (d.(p - c) - off)."""
    rect = shapely.get_coordinates(shapely.oriented_envelope(parts)).reshape(-1, 5, 2)[:, :4]
    centre = rect.mean(axis=1)
    side1, side2 = rect[:, 1] - rect[:, 0], rect[:, 2] - rect[:, 1]
    len1, len2 = np.hypot(*side1.T), np.hypot(*side2.T)
    long1 = len1 >= len2
    u = np.where(long1[:, None], side1, side2) / np.maximum(np.maximum(len1, len2), 1e-9)[:, None]
    v = np.column_stack([-u[:, 1], u[:, 0]])
    hl, hw = np.maximum(len1, len2) / 2, np.minimum(len1, len2) / 2
    hw = np.maximum(hw, 1e-6)
    c, uu, vv = centre, u * hl[:, None], v * hw[:, None]
    inner = u * (hl - hw)[:, None]  # the hipped ridge's half length
    polys, index, d, s, off = [], [], [], [], []

    def add(mask: np.ndarray, corners: list[np.ndarray], direction: np.ndarray,
            slope: np.ndarray, offset: np.ndarray) -> None:
        rows = np.flatnonzero(mask)
        if not len(rows):
            return
        ring = np.stack([p[rows] for p in corners], axis=1)
        polys.append(shapely.polygons(ring))
        index.append(rows)
        d.append(direction[rows])
        s.append(slope[rows])
        off.append(offset[rows])

    zero = np.zeros(len(c))
    gabled, hipped, pyramid = shape == GABLED, shape == HIPPED, shape == PYRAMIDAL
    across = rise / hw
    for sign in (-1.0, 1.0):
        # gabled: two halves of the rectangle either side of the ridge
        add(gabled, [c - uu + sign * vv, c + uu + sign * vv, c + uu, c - uu],
            sign * v, across, zero)
        # hipped: two trapezoids along the ridge, two triangles at its ends
        add(hipped, [c - uu + sign * vv, c + uu + sign * vv, c + inner, c - inner],
            sign * v, across, zero)
        add(hipped, [c + sign * uu - vv, c + sign * uu + vv, c + sign * inner],
            sign * u, across, hl - hw)
        # pyramidal: four triangles meeting over the centre
        add(pyramid, [c - uu + sign * vv, c + uu + sign * vv, c], sign * v, across, zero)
        add(pyramid, [c + sign * uu - vv, c + sign * uu + vv, c], sign * u, rise / hl, zero)
    facets = shapely.orient_polygons(np.concatenate(polys))
    part = np.concatenate(index)
    d, s, off = np.concatenate(d), np.concatenate(s), np.concatenate(off)
    cen = c[part]
    z0 = top[part] + s * ((cen * d).sum(axis=1) + off)
    return facets, part, np.column_stack([z0, -s * d[:, 0], -s * d[:, 1]])


def _triangulate(pieces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles of oriented polygons: (coords (n, 2), piece per coord, triangles (m, 3))
    into coords, counter-clockwise. Coordinates are each ring's without its closing one."""
    rings, ring_piece = shapely.get_rings(pieces, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    closing = np.r_[ring_of[1:] != ring_of[:-1], True]
    xy, ring_of = xy[~closing], ring_of[~closing]
    piece_of = ring_piece[ring_of]
    count = np.bincount(piece_of, minlength=len(pieces))
    start = np.r_[0, np.cumsum(count)[:-1]]
    convex = ((shapely.get_num_interior_rings(pieces) == 0)
              & (shapely.area(shapely.convex_hull(pieces)) - shapely.area(pieces)
                 <= 1e-9 * shapely.area(pieces)))
    # Convex rings: a fan from each first vertex, all at once.
    fans = np.maximum(count[convex] - 2, 0)
    fan_piece = np.repeat(np.flatnonzero(convex), fans)
    # Each fan's triangles count from 0 (no convex piece at all: no fan).
    k = np.arange(len(fan_piece)) - np.repeat(np.cumsum(fans) - fans, fans)
    first = start[fan_piece]
    triangles = [np.column_stack([first, first + k + 1, first + k + 2])]
    ring_count = np.bincount(ring_of, minlength=len(rings))
    for p in np.flatnonzero(~convex):
        lo, hi = start[p], start[p] + count[p]
        ends = np.cumsum(ring_count[ring_piece == p]).astype(np.uint32)
        found = mapbox_earcut.triangulate_float64(xy[lo:hi], ends)
        triangles.append(found.reshape(-1, 3).astype(np.int64) + lo)
    tri = np.concatenate(triangles)
    a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri = tri[np.abs(cross) > 2 * MIN_AREA_M2]
    cross = cross[np.abs(cross) > 2 * MIN_AREA_M2]
    tri[cross < 0] = tri[cross < 0][:, [0, 2, 1]]
    return xy, piece_of, tri


def _walls(pieces: np.ndarray, piece_part: np.ndarray, planes: np.ndarray,
           parts: np.ndarray, pitched_part: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wall edges: (start xy, end xy, top z at start and end, part) of each piece edge on
    its footprint part's boundary (every edge of a flat roof's piece)."""
    rings, ring_piece = shapely.get_rings(pieces, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    edge = np.flatnonzero(ring_of[1:] == ring_of[:-1])
    a, b = xy[edge], xy[edge + 1]
    piece = ring_piece[ring_of[edge]]
    keep = np.hypot(*(b - a).T) > MIN_EDGE_M
    check = keep & pitched_part[piece_part[piece]]
    if check.any():
        rows = np.flatnonzero(check)
        boundary = shapely.boundary(parts)[piece_part[piece[rows]]]
        off_edge = shapely.distance(shapely.points((a[rows] + b[rows]) / 2), boundary)
        keep[rows[off_edge > ON_EDGE_M]] = False
    a, b, piece = a[keep], b[keep], piece[keep]
    plane = planes[piece]
    z_a = plane[:, 0] + plane[:, 1] * a[:, 0] + plane[:, 2] * a[:, 1]
    z_b = plane[:, 0] + plane[:, 1] * b[:, 0] + plane[:, 2] * b[:, 1]
    return a, b, np.column_stack([z_a, z_b]), piece_part[piece]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def building_mesh(fp: Footprints) -> Mesh:
    """The mesh of every building of ``fp``, feature index = position in ``fp``."""
    parts, owner = shapely.get_parts(fp.geoms, return_index=True)
    solid = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    parts, owner = parts[solid], owner[solid]
    # Each building's metric frame: metres east and north of its bounding box's centre.
    bounds = shapely.bounds(fp.geoms)
    lon0, lat0 = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
    kx, ky = metres_per_degree(lat0)
    lonlat, coord_part = shapely.get_coordinates(parts, return_index=True)
    b = owner[coord_part]
    parts = shapely.set_coordinates(parts.copy(), np.column_stack(
        [(lonlat[:, 0] - lon0[b]) * kx[b], (lonlat[:, 1] - lat0[b]) * ky[b]]))
    parts = shapely.orient_polygons(parts)

    pieces, piece_part, planes, pitched_part = _planes_and_pieces(parts, owner, fp)
    xy, piece_of, tri = _triangulate(pieces)
    wall_a, wall_b, wall_top, wall_part = _walls(pieces, piece_part, planes, parts,
                                                 pitched_part)

    # Vertices: walls (4 a quad), roofs (shared within a piece), floors (roof vertices
    # at the bottom, reversed), as metric x, y, height, building, and a normal recipe.
    roof_plane = planes[piece_of]
    roof_z = roof_plane[:, 0] + roof_plane[:, 1] * xy[:, 0] + roof_plane[:, 2] * xy[:, 1]
    roof_b = owner[piece_part[piece_of]]
    wall_bld = owner[wall_part]
    bot = fp.bottom[wall_bld]
    nw = len(wall_a)
    wall_xy = np.stack([wall_a, wall_b, wall_b, wall_a], axis=1).reshape(-1, 2)
    wall_z = np.column_stack([bot, bot, wall_top[:, 1], wall_top[:, 0]]).reshape(-1)
    has_floor = fp.floor[roof_b]
    floor_vertex = np.flatnonzero(has_floor)
    floor_tri_mask = has_floor[tri[:, 0]]
    floor_index = np.full(len(xy), -1)
    floor_index[floor_vertex] = np.arange(len(floor_vertex))

    x = np.concatenate([wall_xy[:, 0], xy[:, 0], xy[floor_vertex, 0]])
    y = np.concatenate([wall_xy[:, 1], xy[:, 1], xy[floor_vertex, 1]])
    h = np.concatenate([wall_z, roof_z, fp.bottom[roof_b[floor_vertex]]])
    bld = np.concatenate([np.repeat(wall_bld, 4), roof_b, roof_b[floor_vertex]])
    lon, lat = lon0[bld] + x / kx[bld], lat0[bld] + y / ky[bld]
    positions = to_ecef(lon, lat, h)
    east, north, up = enu_axes(lon, lat)

    # Walls stand along the vertical: their normal is the bottom edge across the up vector
    # (a gable's triangle has no top edge to take it from).
    quad = positions[: 4 * nw].reshape(nw, 4, 3)
    wall_normal = _unit(np.cross(quad[:, 1] - quad[:, 0], up[: 4 * nw : 4]))
    slope = np.concatenate([roof_plane[:, 1:], np.zeros((len(floor_vertex), 2))])
    roof_up = np.concatenate([np.ones(len(xy)), -np.ones(len(floor_vertex))])
    n_roof = 4 * nw
    roof_normal = _unit(up[n_roof:] * roof_up[:, None] - slope[:, :1] * east[n_roof:]
                        - slope[:, 1:] * north[n_roof:])
    normals = np.concatenate([np.repeat(wall_normal, 4, axis=0), roof_normal])

    base = 4 * np.arange(nw)[:, None]
    wall_tri = np.concatenate([base + np.array([0, 1, 2]), base + np.array([0, 2, 3])])
    floor_tri = floor_index[tri[floor_tri_mask]][:, [0, 2, 1]] + n_roof + len(xy)
    triangles = np.concatenate([wall_tri, tri + n_roof, floor_tri])
    corner = positions[triangles]
    area = np.linalg.norm(np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]),
                          axis=1)
    triangles = triangles[area > 2 * MIN_AREA_M2].astype(np.uint32)
    return Mesh(positions, normals.astype(np.float32), bld, triangles)
