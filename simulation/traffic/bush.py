"""Dial's Algorithm B: bush-based static user equilibrium, compiled with Numba.

Dial, R. B. (2006). A path-based user-equilibrium traffic assignment algorithm that obviates
path storage and enumeration. Transportation Research Part B 40(10), 917-936.

Each origin keeps a *bush*: an acyclic set of links rooted at its centroid that carries all of
its trips, with the origin's own flow on each link. A sweep visits every origin and

1. prunes the bush's links that carry none of its flow (keeping its shortest-path tree, so
   every node stays reached), then adds each network link (i, j) that would shorten the
   longest path to j: U_i + c_ij < U_j. Links only ever join from a lower to a strictly higher
   longest-path label, so the bush stays acyclic (with zero-cost links too);
2. equilibrates the bush (``passes`` times): with shortest (L) and longest used (U) labels
   computed in topological order, each node j, from the last back to the origin, moves flow
   from its longest used path to its shortest one between j and the node where the two paths
   diverge, by one Newton step (cost difference over the sum of BPR derivatives), never more
   than the longest segment carries; where the two paths' costs are within ``close`` of
   each other the node is left alone.

Link flows are the sum of the bushes' flows and are updated with every shift, so the costs a
bush sees are always the current ones (Gauss-Seidel over origins, in the order the caller gives,
which matters: see ``assignment``). The textbook relative gap
(TSTT - SPTT) / TSTT takes a heap Dijkstra per origin (``shortest_path_travel``).

Zone nodes that paths may not pass through (TNTP's first thru node) are never the tail of a
link in another origin's bush nor expanded by its shortest paths. Array layout: links sorted
in any order; ``out_start``/``out_links`` and ``in_start``/``in_links`` are the forward and
backward stars (CSR over nodes); bushes are dense ``(origins, links)`` rows, and each bush's
topological order is kept between sweeps (only its own update changes it).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Bush flow below this many vehicles per hour counts as none when pruning.
_NO_FLOW = 1e-9


@njit(cache=True)
def link_costs(flow, fft, capacity, alpha, beta, fixed, cost, deriv):
    """BPR cost plus fixed cost, and its derivative, of every link at ``flow``."""
    for k in range(len(flow)):
        _set_cost(k, flow, fft, capacity, alpha, beta, fixed, cost, deriv)


@njit(cache=True)
def _set_cost(k, flow, fft, capacity, alpha, beta, fixed, cost, deriv):
    x = flow[k] / capacity[k]
    if beta[k] == 4.0:  # the usual BPR power: a product is several times faster than pow
        power = x * x * x
    elif x > 0.0:
        power = x ** (beta[k] - 1.0)
    else:
        power = 1.0 if beta[k] == 1.0 else 0.0
    cost[k] = fft[k] * (1.0 + alpha[k] * x * power) + fixed[k]
    deriv[k] = fft[k] * alpha[k] * beta[k] * power / capacity[k]


@njit(cache=True)
def _heap_push(keys, items, size, key, item):
    i = size
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] <= key:
            break
        keys[i] = keys[parent]
        items[i] = items[parent]
        i = parent
    keys[i] = key
    items[i] = item
    return size + 1


@njit(cache=True)
def _heap_pop(keys, items, size):
    """Removes the smallest entry (returned by the caller from index 0 first)."""
    size -= 1
    key, item = keys[size], items[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= key:
            break
        keys[i] = keys[child]
        items[i] = items[child]
        i = child
    keys[i] = key
    items[i] = item
    return size


@njit(cache=True)
def shortest_tree(root, cost, out_start, out_links, head, blocked, dist, pred, settled,
                  keys, items, wanted, left):
    """Dijkstra from ``root``: distances, predecessor links, and the nodes in settling order
    (a topological order of the tree); returns how many nodes were settled. It stops once
    ``left`` of the ``wanted`` nodes are settled (never, with ``left`` 0)."""
    dist[:] = np.inf
    pred[:] = -1
    dist[root] = 0.0
    size = _heap_push(keys, items, 0, 0.0, root)
    count = 0
    while size > 0:
        d, i = keys[0], items[0]
        size = _heap_pop(keys, items, size)
        if d > dist[i]:  # a stale entry: the node was settled at a lower cost
            continue
        settled[count] = i
        count += 1
        if wanted[i]:
            left -= 1
            if left == 0:
                break
        if blocked[i] and i != root:
            continue
        for e in range(out_start[i], out_start[i + 1]):
            k = out_links[e]
            j = head[k]
            nd = d + cost[k]
            if nd < dist[j]:
                dist[j] = nd
                pred[j] = k
                size = _heap_push(keys, items, size, nd, j)
    return count


@njit(cache=True)
def initial_bushes(roots, trips, zone_nodes, tail, head, out_start, out_links, blocked, cost,
                   flow, bush_flow, in_bush, orders, counts):
    """Each origin's bush is its shortest-path tree at ``cost``, all its trips loaded on it,
    with its nodes in a topological order (``orders[q, :counts[q]]``).

    Returns, per origin and destination zone, whether trips are there that no path carries.
    """
    num_nodes, num_links = len(out_start) - 1, len(tail)
    dist = np.empty(num_nodes)
    pred = np.empty(num_nodes, dtype=np.int64)
    settled = np.empty(num_nodes, dtype=np.int64)
    keys = np.empty(num_links + 1)
    items = np.empty(num_links + 1, dtype=np.int64)
    load = np.zeros(num_nodes)
    unrouted = np.zeros(trips.shape, dtype=np.bool_)
    everything = np.zeros(num_nodes, dtype=np.bool_)
    for q in range(len(roots)):
        count = shortest_tree(roots[q], cost, out_start, out_links, head, blocked, dist, pred,
                              settled, keys, items, everything, 0)
        orders[q, :count] = settled[:count]
        counts[q] = count
        load[:] = 0.0
        for z in range(len(zone_nodes)):
            if trips[q, z] > 0.0:
                if np.isfinite(dist[zone_nodes[z]]):
                    load[zone_nodes[z]] += trips[q, z]
                else:
                    unrouted[q, z] = True
        for idx in range(count - 1, 0, -1):
            j = settled[idx]
            k = pred[j]
            in_bush[q, k] = True
            if load[j] > 0.0:
                bush_flow[q, k] += load[j]
                flow[k] += load[j]
                load[tail[k]] += load[j]
    return unrouted


@njit(cache=True)
def _topological(root, mask, out_start, out_links, head, in_start, in_links, order, position,
                 indegree):
    """Kahn's order of the bush's nodes from ``root``; returns how many it holds."""
    indegree[:] = 0
    for k in range(len(mask)):
        if mask[k]:
            indegree[head[k]] += 1
    order[0] = root
    position[root] = 0
    count, first = 1, 0
    while first < count:
        i = order[first]
        first += 1
        for e in range(out_start[i], out_start[i + 1]):
            k = out_links[e]
            if mask[k]:
                j = head[k]
                indegree[j] -= 1
                if indegree[j] == 0:
                    position[j] = count
                    order[count] = j
                    count += 1
    return count


@njit(cache=True)
def _labels(root, order, count, in_start, in_links, tail, mask, bush_flow, cost, low, low_pred,
            high, high_pred):
    """Shortest path labels over the bush, longest over its links with flow."""
    low[:] = np.inf
    high[:] = -np.inf
    low[root] = 0.0
    high[root] = 0.0
    for idx in range(1, count):
        j = order[idx]
        low_pred[j] = -1
        high_pred[j] = -1
        for e in range(in_start[j], in_start[j + 1]):
            k = in_links[e]
            if not mask[k]:
                continue
            i = tail[k]
            c = cost[k]
            if low[i] + c < low[j]:
                low[j] = low[i] + c
                low_pred[j] = k
            if bush_flow[k] > 0.0 and high[i] + c > high[j]:
                high[j] = high[i] + c
                high_pred[j] = k


@njit(cache=True)
def _update_bush(root, mask, bush_flow, flow, cost, tail, head, blocked, order, count,
                 in_start, in_links, low, low_pred, high):
    """Drops links without flow (but not the shortest-path tree); adds the shortcuts."""
    low[:] = np.inf
    high[:] = -np.inf
    low[root] = 0.0
    high[root] = 0.0
    for idx in range(1, count):
        j = order[idx]
        for e in range(in_start[j], in_start[j + 1]):
            k = in_links[e]
            if mask[k] and low[tail[k]] + cost[k] < low[j]:
                low[j] = low[tail[k]] + cost[k]
                low_pred[j] = k
        # Tails come first in the order, so their longest paths are final already.
        for e in range(in_start[j], in_start[j + 1]):
            k = in_links[e]
            if not mask[k]:
                continue
            if bush_flow[k] <= _NO_FLOW and low_pred[j] != k:
                mask[k] = False
                flow[k] -= bush_flow[k]
                bush_flow[k] = 0.0
            elif high[tail[k]] + cost[k] > high[j]:
                high[j] = high[tail[k]] + cost[k]
    for k in range(len(mask)):
        i, j = tail[k], head[k]
        if mask[k] or j == root or (blocked[i] and i != root):
            continue
        if high[i] > -np.inf and high[i] + cost[k] < high[j]:
            mask[k] = True


@njit(cache=True)
def _equilibrate(root, mask, bush_flow, flow, fft, capacity, alpha, beta, fixed, cost, deriv,
                 tail, order, count, position, in_start, in_links, low, low_pred, high,
                 high_pred, close):
    """One pass of Newton shifts from longest used to shortest paths, last node first, at
    the nodes where they differ by more than ``close`` of the longest."""
    _labels(root, order, count, in_start, in_links, tail, mask, bush_flow, cost, low, low_pred,
            high, high_pred)
    for idx in range(count - 1, 0, -1):
        j = order[idx]
        if high_pred[j] < 0 or high[j] - low[j] <= close * high[j]:
            continue
        # The divergence node: walk back the later of the two paths until they meet.
        a, b = tail[low_pred[j]], tail[high_pred[j]]
        while a != b:
            if position[a] > position[b]:
                a = tail[low_pred[a]]
            else:
                b = tail[high_pred[b]]
        short_cost = short_deriv = long_cost = long_deriv = 0.0
        most = np.inf
        i = j
        while i != a:
            k = low_pred[i]
            short_cost += cost[k]
            short_deriv += deriv[k]
            i = tail[k]
        i = j
        while i != a:
            k = high_pred[i]
            long_cost += cost[k]
            long_deriv += deriv[k]
            most = min(most, bush_flow[k])
            i = tail[k]
        difference = long_cost - short_cost
        if difference <= 0.0 or most <= 0.0:
            continue
        slope = short_deriv + long_deriv
        shift = min(most, difference / slope) if slope > 0.0 else most
        i = j
        while i != a:
            k = low_pred[i]
            bush_flow[k] += shift
            flow[k] += shift
            _set_cost(k, flow, fft, capacity, alpha, beta, fixed, cost, deriv)
            i = tail[k]
        i = j
        while i != a:
            k = high_pred[i]
            bush_flow[k] = max(bush_flow[k] - shift, 0.0)
            flow[k] = max(flow[k] - shift, 0.0)
            _set_cost(k, flow, fft, capacity, alpha, beta, fixed, cost, deriv)
            i = tail[k]


@njit(cache=True)
def sweep(roots, sequence, passes, close, tail, head, out_start, out_links, in_start, in_links,
          blocked, fft, capacity, alpha, beta, fixed, flow, cost, deriv, bush_flow, in_bush,
          orders, counts):
    """One Algorithm B iteration: each origin's bush, in the order of ``sequence`` (indices
    into ``roots``), updated, then equilibrated ``passes`` times. Paths within ``close`` of
    each other (a fraction of their cost) are left as they are: were all so, the gap within
    the bushes would be below ``close``."""
    num_nodes = len(out_start) - 1
    order = np.empty(num_nodes, dtype=np.int64)
    position = np.empty(num_nodes, dtype=np.int64)
    indegree = np.empty(num_nodes, dtype=np.int64)
    low, high = np.empty(num_nodes), np.empty(num_nodes)
    low_pred = np.empty(num_nodes, dtype=np.int64)
    high_pred = np.empty(num_nodes, dtype=np.int64)
    for q in sequence:
        root, mask, own = roots[q], in_bush[q], bush_flow[q]
        # The order left by the origin's last visit still holds: only it changes its bush.
        order[:counts[q]] = orders[q, :counts[q]]
        _update_bush(root, mask, own, flow, cost, tail, head, blocked, order, counts[q],
                     in_start, in_links, low, low_pred, high)
        count = _topological(root, mask, out_start, out_links, head, in_start, in_links,
                             order, position, indegree)
        orders[q, :count] = order[:count]
        counts[q] = count
        for _ in range(passes):
            _equilibrate(root, mask, own, flow, fft, capacity, alpha, beta, fixed, cost,
                         deriv, tail, order, count, position, in_start, in_links, low,
                         low_pred, high, high_pred, close)


@njit(cache=True)
def shortest_path_travel(roots, trips, zone_nodes, cost, head, out_start, out_links,
                         blocked):
    """SPTT: every trip at the cost of its origin's shortest path to its destination."""
    num_nodes, num_links = len(out_start) - 1, len(head)
    dist = np.empty(num_nodes)
    pred = np.empty(num_nodes, dtype=np.int64)
    settled = np.empty(num_nodes, dtype=np.int64)
    keys = np.empty(num_links + 1)
    items = np.empty(num_links + 1, dtype=np.int64)
    wanted = np.zeros(num_nodes, dtype=np.bool_)
    total = 0.0
    for q in range(len(roots)):
        left = 0
        for z in range(len(zone_nodes)):
            if trips[q, z] > 0.0:
                wanted[zone_nodes[z]] = True
                left += 1
        shortest_tree(roots[q], cost, out_start, out_links, head, blocked, dist, pred,
                      settled, keys, items, wanted, left)
        for z in range(len(zone_nodes)):
            if trips[q, z] > 0.0:
                total += trips[q, z] * dist[zone_nodes[z]]
                wanted[zone_nodes[z]] = False
    return total
