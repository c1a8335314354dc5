"""Level pools: water bodies and deep depressions whose water surface stays level.

A pool is a 4-connected group of a grid's ``pool`` cells (a lake, a pond, an underpass's
trench). Inside it the explicit scheme is not run: the faces between two of its cells carry
nothing, and after every step the water the pool holds (what its cells got through their
banks, rain, infiltration, inlets) is spread to one level η over its beds, as a reservoir
is routed (the storage-cell idea of LISFLOOD-FP and rapid flood-spreading models). Its
depth therefore no longer sets the grid's time step: only the faces between a pool and
ordinary cells (its banks) do, by their own flow depth max(η_a, η_b) − max(z_a, z_b), the
depth the stability limit of the local-inertial scheme is about.

A pool grows: an ordinary cell beside it, deeper than ``Options.pool_join_depth`` and with
its surface within ``JOIN_TOLERANCE_M`` of the pool's, is water of the pool (a lake over its
shore road, an underpass brimming over into the street) and joins it. So the water beside a
pool is never much deeper than that depth, and a rising lake does not bring back the step
its own depth would set.

What is lost: flow inside the pool (a lake's currents, a seiche, the minute water takes to
run down an underpass's ramp). What is kept: the water. The pool's cells keep their depths
in the state arrays, so every other part of the solver (drainage, retention, the budget)
sees ordinary cells, and spreading moves water without creating any: the cells' sum after
equals the sum before to round-off (the residue goes to the pool's lowest cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from scipy import ndimage

JOIN_TOLERANCE_M = 0.01
# How a domain edge takes a pool's water (Pools.of).
SHUT, OPEN, SURFACE = 0, 1, 2


@dataclass(frozen=True)
class Pools:
    """The pools of a grid, precomputed once per run.

    ``labels`` (int32, 0 outside any pool), per pool its member cells (flat indexes, within
    ``members[starts[k]:starts[k + 1]]``), their beds sorted upwards (``beds``, float64)
    with their running sums (``prefix``, one longer per pool: ``prefix[starts[k] + k]`` is
    0), its lowest cell; and the bank faces (pool cell, ordinary neighbour; a negative
    neighbour −1 − side for a pool cell on a domain edge that can carry its water).
    """

    labels: np.ndarray
    members: np.ndarray
    starts: np.ndarray
    beds: np.ndarray
    prefix: np.ndarray
    lowest: np.ndarray
    bank_pool: np.ndarray
    bank_other: np.ndarray

    @property
    def count(self) -> int:
        return len(self.starts) - 1

    def settle(self, h: np.ndarray, zf: np.ndarray, h_max: np.ndarray, arrival: np.ndarray,
               t_end: float, arrival_depth: float) -> None:
        """Each pool's water at one level (:func:`level`)."""
        level(h, self.members, self.starts, self.beds, self.prefix, self.lowest, zf, h_max,
              arrival, t_end, arrival_depth)

    def deepest_bank(self, h: np.ndarray, z: np.ndarray) -> float:
        """The deepest water on either side of a bank face (:func:`bank_depth`)."""
        return bank_depth(h, z, self.bank_pool, self.bank_other)

    def joining(self, h: np.ndarray, z: np.ndarray, depth: float) -> np.ndarray:
        """Flat indexes of the ordinary cells beside a pool that are water of it: deeper than
        ``depth``, their surface within ``JOIN_TOLERANCE_M`` of the wet pool cell's."""
        side = self.bank_other >= 0
        a, b = self.bank_pool[side], self.bank_other[side]
        hf, zf = h.ravel(), z.ravel()
        same = np.abs((zf[b] + hf[b]) - (zf[a] + hf[a])) < JOIN_TOLERANCE_M
        return np.unique(b[(hf[a] > 0) & (hf[b] > depth) & same])

    @classmethod
    def none(cls, shape: tuple[int, int]) -> Pools:
        empty = np.zeros(0, np.int64)
        return cls(np.zeros(shape, np.int32), empty, np.zeros(1, np.int64), np.zeros(0),
                   np.zeros(0), empty, empty, empty)

    @classmethod
    def of(cls, mask: np.ndarray, active: np.ndarray, z: np.ndarray,
           sides: tuple[int, int, int, int]) -> Pools:
        """The pools of the ``mask`` cells on the ``active`` ones over beds ``z``; ``sides``
        (north, south, west, east) says which domain edges carry a pool's water: ``SHUT``,
        ``OPEN`` (a level or a given slope drives it) or ``SURFACE`` (the local surface
        slope drives it: nothing where the cell inside is of the same pool)."""
        labels, count = ndimage.label(mask & active)
        labels = labels.astype(np.int32)
        if count == 0:
            return cls.none(mask.shape)
        flat = labels.ravel()
        members = np.flatnonzero(flat)
        members = members[np.argsort(flat[members], kind="stable")]  # by pool, flat order
        sizes = np.bincount(flat[members], minlength=count + 1)[1:]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        zf = z.ravel().astype(np.float64)
        beds = np.empty(len(members))
        prefix = np.empty(len(members) + count)
        lowest = np.empty(count, np.int64)
        for k in range(count):
            cells = members[starts[k]:starts[k + 1]]
            order = np.argsort(zf[cells], kind="stable")
            beds[starts[k]:starts[k + 1]] = zf[cells][order]
            prefix[starts[k] + k:starts[k + 1] + k + 1] = np.concatenate(
                [[0.0], np.cumsum(zf[cells][order])])
            lowest[k] = cells[order[0]]
        bank_pool, bank_other = _banks(labels, active, sides)
        return cls(labels, members, starts, beds, prefix, lowest, bank_pool, bank_other)


def grow(mask: np.ndarray, h: np.ndarray, z: np.ndarray, active: np.ndarray, depth: float
         ) -> np.ndarray:
    """``mask`` grown through the ordinary cells that are water of a pool (:meth:`Pools.
    joining`'s test, cell to cell), so a flooded shore joins at once, not a ring a check."""
    mask = mask.copy()
    eta = z + h
    wet = active & (h > depth)
    while True:
        grown = False
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            inner = [slice(None)] * 2
            outer = [slice(None)] * 2
            inner[axis] = slice(shift, None) if shift == 1 else slice(None, -1)
            outer[axis] = slice(None, -1) if shift == 1 else slice(1, None)
            into, source = tuple(inner), tuple(outer)
            take = (~mask[into] & wet[into] & mask[source] & (h[source] > 0)
                    & (np.abs(eta[into] - eta[source]) < JOIN_TOLERANCE_M))
            if take.any():
                mask[into] |= take
                grown = True
        if not grown:
            return mask


def _banks(labels: np.ndarray, active: np.ndarray, sides: tuple[int, int, int, int]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Faces between a pool cell and an active cell outside every pool, and pool cells on
    domain edges that carry water (their neighbour −1 − side, sides in the kernels' order)."""
    ny, nx = labels.shape
    index = np.arange(ny * nx).reshape(ny, nx)
    pool = labels > 0
    ordinary = active & ~pool
    pairs = []
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),
                 ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        where = pool[a] & ordinary[b]
        pairs.append((index[a][where], index[b][where]))
    edges = ((labels[0], labels[min(1, ny - 1)], index[0]),
             (labels[-1], labels[max(ny - 2, 0)], index[-1]),
             (labels[:, 0], labels[:, min(1, nx - 1)], index[:, 0]),
             (labels[:, -1], labels[:, max(nx - 2, 0)], index[:, -1]))
    for side, (edge, inner, cells) in enumerate(edges):
        on = (edge > 0) & (sides[side] != SHUT)
        if sides[side] == SURFACE:
            on &= edge != inner  # one level on both: no slope, no flow
        pairs.append((cells[on], np.full(int(on.sum()), -1 - side)))
    return (np.concatenate([p[0] for p in pairs]).astype(np.int64),
            np.concatenate([p[1] for p in pairs]).astype(np.int64))


@njit(parallel=True, cache=True, nogil=True)
def level(h: np.ndarray, members: np.ndarray, starts: np.ndarray, beds: np.ndarray,
          prefix: np.ndarray, lowest: np.ndarray, zf: np.ndarray, h_max: np.ndarray,
          arrival: np.ndarray, t_end: float, arrival_depth: float) -> None:
    """Spread each pool's water to one level over its beds; keep its cells' running maximum
    depth and time of first flooding (``zf``: the beds, flat, float64)."""
    hf = h.ravel()
    hmax = h_max.ravel()
    first = arrival.ravel()
    for k in prange(len(starts) - 1):
        s, e = starts[k], starts[k + 1]
        volume = 0.0  # in cell-depths, float64 whatever the state's precision
        for m in range(s, e):
            volume += hf[members[m]]
        # The most cells m (lowest beds first) the water covers: m z_(m) − Σ_(i<m) z_(i) ≤ V.
        lo, hi = 1, e - s
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid * beds[s + mid - 1] - prefix[s + k + mid] <= volume:
                lo = mid
            else:
                hi = mid - 1
        eta = (volume + prefix[s + k + lo]) / lo
        spread = 0.0
        for m in range(s, e):
            c = members[m]
            d = max(eta - zf[c], 0.0)
            hf[c] = d
            spread += hf[c]  # as stored: float32 states round here
        hf[lowest[k]] += volume - spread
        for m in range(s, e):
            c = members[m]
            d = hf[c]
            if d > hmax[c]:
                hmax[c] = d
            if d > arrival_depth and np.isnan(first[c]):
                first[c] = t_end


@njit(cache=True, nogil=True)
def bank_depth(h: np.ndarray, z: np.ndarray, bank_pool: np.ndarray,
               bank_other: np.ndarray) -> float:
    """The deepest flow over a pool's banks (Bates 2010 eq. 6: the higher surface over the
    higher bed), and the depth of pool cells on open domain edges."""
    hf = h.ravel()
    zf = z.ravel()
    deepest = 0.0
    for f in range(len(bank_pool)):
        a = bank_pool[f]
        b = bank_other[f]
        if b < 0:  # on an open domain edge
            deepest = max(deepest, hf[a])
        else:
            deepest = max(deepest, max(zf[a] + hf[a], zf[b] + hf[b]) - max(zf[a], zf[b]))
    return deepest
