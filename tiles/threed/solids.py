"""Buildings drawn from their own 3D geometry (``geom_3d``: CityJSON LOD1/LOD2 surfaces
with absolute heights, in lon/lat): every surface triangulated as it is.

Each surface is a planar 3D polygon (holes allowed). It is looked at along its Newell
normal's largest axis, triangulated there by earcut, and each triangle is turned to face
the way the surface faces (CityJSON orders a surface's exterior ring anticlockwise seen
from outside, so the Newell normal points out). Vertices go to ECEF in float64; faces are
flat-shaded like the extruded buildings.
"""

from __future__ import annotations

import mapbox_earcut
import numpy as np
import shapely

from tiles.threed.extrude import Mesh
from tiles.threed.geodesy import enu_axes, metres_per_degree, to_ecef

MIN_NORMAL = 1e-9
"""A surface whose Newell normal is shorter (m², twice its area) is degenerate: left out."""


def is_solid(geoms_3d: np.ndarray) -> np.ndarray:
    """Which 3D geometries describe a volume (several surfaces spanning some height), not a
    footprint that happens to carry heights."""
    solid = np.zeros(len(geoms_3d), dtype=bool)
    present = ~shapely.is_missing(geoms_3d)
    if present.any():
        geoms = geoms_3d[present]
        z = [np.ptp(shapely.get_coordinates(g, include_z=True)[:, 2]) for g in geoms]
        solid[present] = (shapely.get_num_geometries(geoms) > 1) & (np.array(z) > 0.1)
    return solid


def _newell(ring: np.ndarray) -> np.ndarray:
    following = np.roll(ring, -1, axis=0)
    return np.array([
        np.sum((ring[:, 1] - following[:, 1]) * (ring[:, 2] + following[:, 2])),
        np.sum((ring[:, 2] - following[:, 2]) * (ring[:, 0] + following[:, 0])),
        np.sum((ring[:, 0] - following[:, 0]) * (ring[:, 1] + following[:, 1]))])


def solid_mesh(geoms_3d: np.ndarray, feature: np.ndarray) -> Mesh:
    """The mesh of the solids ``geoms_3d``, each vertex carrying ``feature`` of its solid."""
    corners: list[np.ndarray] = []
    normals: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for geom, owner in zip(geoms_3d, feature, strict=True):
        lonlat = shapely.get_coordinates(geom, include_z=True)
        lon0, lat0 = lonlat[:, 0].mean(), lonlat[:, 1].mean()
        kx, ky = (float(k[0]) for k in metres_per_degree(np.array([lat0])))
        east, north, up = (a[0] for a in enu_axes(np.array([lon0]), np.array([lat0])))
        for surface in shapely.get_parts(geom):
            rings = [np.asarray(r.coords)[:-1] for r in (surface.exterior, *surface.interiors)]
            rings = [r for r in rings if len(r) >= 3]
            if not rings:
                continue
            points = np.concatenate(rings)
            local = np.column_stack([(points[:, 0] - lon0) * kx, (points[:, 1] - lat0) * ky,
                                     points[:, 2]])
            normal = _newell(local[:len(rings[0])])
            length = np.linalg.norm(normal)
            if length < MIN_NORMAL:
                continue
            normal /= length
            keep = [axis for axis in range(3) if axis != int(np.argmax(np.abs(normal)))]
            ends = np.cumsum([len(r) for r in rings]).astype(np.uint32)
            triangles = np.asarray(mapbox_earcut.triangulate_float64(
                local[:, keep], ends), dtype=np.int64).reshape(-1, 3)
            if not len(triangles):
                continue
            a, b, c = (local[triangles[:, i]] for i in range(3))
            backwards = (np.cross(b - a, c - a) @ normal) < 0
            triangles[backwards] = triangles[backwards][:, ::-1]
            corners.append(points[triangles.reshape(-1)])
            turned = normal[0] * east + normal[1] * north + normal[2] * up
            normals.append(np.tile(turned, (3 * len(triangles), 1)))
            owners.append(np.full(3 * len(triangles), owner))
    if not corners:
        return Mesh.empty()
    vertices = np.concatenate(corners)
    positions = to_ecef(vertices[:, 0], vertices[:, 1], vertices[:, 2])
    return Mesh(positions, np.concatenate(normals).astype(np.float32), np.concatenate(owners),
                np.arange(len(positions), dtype=np.uint32).reshape(-1, 3))
