"""User-equilibrium assignment: BPR, a two-route network solved by hand, and Sioux Falls
against its best-known solution (shared/data/traffic, see its README)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulation.traffic import tntp
from simulation.traffic.assignment import (
    Demand,
    Network,
    assign,
    beckmann,
    bpr,
    link_cost,
    relative_gap,
)
from simulation.traffic.errors import TrafficInputError

# CI clones the repository with the shared folder beside it.
SIOUX_FALLS = Path(__file__).resolve().parents[2] / "shared" / "data" / "traffic" / "SiouxFalls"


def two_routes(trips: float = 3000.0) -> tuple[Network, Demand]:
    """Zone 0 to zone 1 over a fast narrow road (via node 2) or a slow wide one."""
    network = Network(
        num_nodes=3,
        init_node=np.array([0, 2, 0]), term_node=np.array([2, 1, 1]),
        capacity=np.array([1000.0, 1e9, 4000.0]), free_flow_time=np.array([10.0, 0.0, 15.0]),
        alpha=np.array([0.15, 0.0, 0.15]), beta=np.array([4.0, 4.0, 4.0]),
        length_km=np.array([8.0, 0.0, 12.0]), zone_nodes=np.array([0, 1]))
    return network, Demand(np.array([[0.0, trips], [0.0, 0.0]]))


def test_bpr_is_free_flow_at_zero_and_1_15_at_capacity():
    t0, cap = np.array([10.0, 4.0]), np.array([1000.0, 500.0])
    alpha, beta = np.full(2, 0.15), np.full(2, 4.0)
    assert bpr(np.zeros(2), t0, cap, alpha, beta) == pytest.approx(t0)
    assert bpr(cap, t0, cap, alpha, beta) == pytest.approx(t0 * 1.15)
    assert bpr(2 * cap, t0, cap, alpha, beta) == pytest.approx(t0 * (1 + 0.15 * 16))


def test_two_routes_reach_equal_times():
    network, demand = two_routes()
    result = assign(network, demand, gap=1e-8)
    fast, slow = result.volume[0], result.volume[2]
    assert fast + slow == pytest.approx(3000.0)
    assert result.volume[1] == pytest.approx(fast)
    # Wardrop: both used routes cost the same.
    assert result.time[0] + result.time[1] == pytest.approx(result.time[2], rel=1e-6)
    assert result.converged and result.relative_gap <= 1e-8
    assert result.vehicle_km == pytest.approx(8 * fast + 12 * slow)
    assert result.vehicle_hours == pytest.approx(np.dot(result.volume, result.time) / 60)
    assert result.voc == pytest.approx(result.volume / network.capacity)
    assert result.beckmann == pytest.approx(beckmann(network, result.volume))


def test_light_traffic_takes_only_the_fast_route():
    network, demand = two_routes(trips=100.0)
    result = assign(network, demand)
    assert result.volume[2] == pytest.approx(0.0, abs=1e-9)
    assert relative_gap(network, demand, result.volume) <= 1e-12


def test_zones_are_not_passed_through_when_the_file_says_so():
    # Zone 1 sits on the only short way from zone 0 to zone 2; the long way is 100 min.
    network = Network(
        num_nodes=3, init_node=np.array([0, 1, 0]), term_node=np.array([1, 2, 2]),
        capacity=np.full(3, 1000.0), free_flow_time=np.array([1.0, 1.0, 100.0]),
        alpha=np.zeros(3), beta=np.ones(3), length_km=np.ones(3),
        zone_nodes=np.array([0, 1, 2]), through_zones=False)
    demand = Demand(np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert assign(network, demand).volume == pytest.approx([0.0, 0.0, 10.0])


@pytest.mark.parametrize(("change", "message"), [
    ({"capacity": np.array([1000.0, 0.0, 4000.0])}, "positive capacity"),
    ({"free_flow_time": np.array([-1.0, 0.0, 15.0])}, "free_flow_time"),
    ({"term_node": np.array([2, 1, 7])}, "outside"),
    ({"alpha": np.array([0.15, 0.0])}, "2 entries for 3 links"),
])
def test_bad_networks_are_refused(change, message):
    network, _ = two_routes()
    fields = {k: getattr(network, k) for k in network.__dataclass_fields__} | change
    with pytest.raises(TrafficInputError, match=message):
        Network(**fields)


def test_bad_demand_and_gap_are_refused():
    network, demand = two_routes()
    with pytest.raises(TrafficInputError, match="square"):
        Demand(np.zeros((2, 3)))
    with pytest.raises(TrafficInputError, match="negative"):
        Demand(np.array([[0.0, -1.0], [0.0, 0.0]]))
    with pytest.raises(TrafficInputError, match="3 zones"):
        assign(network, Demand(np.zeros((3, 3))))
    with pytest.raises(TrafficInputError, match="gap"):
        assign(network, demand, gap=0.0)


def test_unroutable_trips_are_a_clear_error():
    network, _ = two_routes()
    with pytest.raises(TrafficInputError):
        assign(network, Demand(np.array([[0.0, 0.0], [50.0, 0.0]])))


@pytest.mark.skipif(not SIOUX_FALLS.is_dir(), reason="shared/data/traffic is not beside the "
                    "repository")
def test_sioux_falls_matches_the_best_known_solution():
    network = tntp.read_net(SIOUX_FALLS / "SiouxFalls_net.tntp")
    demand = tntp.read_trips(SIOUX_FALLS / "SiouxFalls_trips.tntp", network.num_zones)
    best = tntp.read_flow(SIOUX_FALLS / "SiouxFalls_flow.tntp")
    assert (best.init_node - 1 == network.init_node).all()
    result = assign(network, demand, gap=1e-5)
    assert result.converged and result.relative_gap <= 1e-5
    best_tstt = np.dot(best.volume, link_cost(network, best.volume))
    assert np.dot(result.volume, result.cost) == pytest.approx(best_tstt, rel=1e-3)
    # The README's optimal objective, 42.31335287 in units of 1e5.
    assert result.beckmann / 1e5 == pytest.approx(42.31335287, rel=1e-4)
    depends = network.alpha > 0  # flows are unique only where cost depends on flow
    error = result.volume[depends] - best.volume[depends]
    assert np.sqrt(np.mean(error**2)) < 0.01 * best.volume[depends].mean()
