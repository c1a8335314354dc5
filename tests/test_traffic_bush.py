"""Algorithm B (simulation/traffic/bush.py): equilibria computed by hand, Anaheim against its
best-known solution, and agreement with pytraf's independent engine on Sioux Falls."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.traffic import tntp
from simulation.traffic.assignment import Demand, Network, assign, relative_gap
from simulation.traffic.errors import TrafficInputError
from tests.test_traffic_assignment import SIOUX_FALLS

ANAHEIM = SIOUX_FALLS.parent / "Anaheim"


def parallel(t0: list[float], capacity: list[float], alpha: float, beta: float,
             trips: float) -> tuple[Network, Demand]:
    """Parallel links from zone 0 to zone 1, all with BPR costs."""
    links = len(t0)
    network = Network(
        num_nodes=2, init_node=np.zeros(links, dtype=int), term_node=np.ones(links, dtype=int),
        capacity=np.array(capacity), free_flow_time=np.array(t0),
        alpha=np.full(links, alpha), beta=np.full(links, beta), length_km=np.ones(links),
        zone_nodes=np.array([0, 1]))
    return network, Demand(np.array([[0.0, trips], [0.0, 0.0]]))


def test_two_linear_routes_split_where_times_are_equal():
    # 10 + 0.01 x = 20 + 0.005 (3000 - x)  gives  x = 5000 / 3, both at 80 / 3 minutes.
    network, demand = parallel([10.0, 20.0], [1000.0, 4000.0], 1.0, 1.0, 3000.0)
    result = assign(network, demand, gap=1e-10)
    assert result.volume == pytest.approx([5000 / 3, 4000 / 3], rel=1e-8)
    assert result.time == pytest.approx([80 / 3, 80 / 3], rel=1e-8)
    assert result.converged


def test_quartic_routes_split_by_capacity():
    # Same free-flow time, so equal times need equal v/c: 1000 and 2000 of 3000 trips.
    network, demand = parallel([10.0, 10.0], [1000.0, 2000.0], 0.15, 4.0, 3000.0)
    result = assign(network, demand, gap=1e-10)
    assert result.volume == pytest.approx([1000.0, 2000.0], rel=1e-6)
    assert result.time == pytest.approx([11.5, 11.5], rel=1e-8)


def test_the_cheaper_route_alone_carries_light_traffic():
    # 20 trips add 0.2 min to the 10-minute link: still below the other's 20.
    network, demand = parallel([10.0, 20.0], [1000.0, 4000.0], 1.0, 1.0, 20.0)
    result = assign(network, demand, gap=1e-10)
    assert result.volume == pytest.approx([20.0, 0.0], abs=1e-9)


def test_unroutable_pairs_are_named():
    network, _ = parallel([10.0, 20.0], [1000.0, 4000.0], 1.0, 1.0, 0.0)
    with pytest.raises(TrafficInputError, match=r"1 OD pairs.*: 2 to 1$"):
        assign(network, Demand(np.array([[0.0, 5.0], [7.0, 0.0]])))


def test_unknown_engine_is_refused():
    network, demand = parallel([10.0, 20.0], [1000.0, 4000.0], 1.0, 1.0, 20.0)
    with pytest.raises(TrafficInputError, match="engine"):
        assign(network, demand, engine="frank-wolfe")  # type: ignore[arg-type]


@pytest.mark.skipif(not ANAHEIM.is_dir(), reason="shared/data/traffic is not beside the "
                    "repository")
def test_anaheim_reaches_1e5_and_the_best_known_flows():
    network = tntp.read_net(ANAHEIM / "Anaheim_net.tntp", length_km=0.0003048)
    demand = tntp.read_trips(ANAHEIM / "Anaheim_trips.tntp", network.num_zones)
    best = tntp.read_flow(ANAHEIM / "Anaheim_flow.tntp")
    assert (best.init_node - 1 == network.init_node).all()
    result = assign(network, demand, gap=1e-5)
    assert result.converged and result.relative_gap <= 1e-5
    # Our Numba gap of the last sweep is SciPy's of the final flows.
    assert result.gaps[-1] == pytest.approx(result.relative_gap, rel=1e-3)
    assert result.volume.sum() > 0 and np.all(result.volume >= 0)
    # A gap of 1e-5 leaves Anaheim's flows 0.3-1.1 % RMSE from the best-known ones, by the
    # origin order (its objective is flat along some flow shifts); 1e-6 pins them to 1 %.
    result = assign(network, demand, gap=1e-6)
    depends = network.alpha > 0
    error = result.volume[depends] - best.volume[depends]
    assert result.converged
    assert np.sqrt(np.mean(error**2)) < 0.01 * best.volume[depends].mean()


@pytest.mark.skipif(not SIOUX_FALLS.is_dir(), reason="shared/data/traffic is not beside the "
                    "repository")
def test_algorithm_b_and_pytraf_agree_on_sioux_falls():
    network = tntp.read_net(SIOUX_FALLS / "SiouxFalls_net.tntp")
    demand = tntp.read_trips(SIOUX_FALLS / "SiouxFalls_trips.tntp", network.num_zones)
    ours = assign(network, demand, gap=1e-6)
    theirs = assign(network, demand, gap=1e-6, engine="pytraf")
    assert ours.converged and theirs.converged
    assert relative_gap(network, demand, ours.volume) == pytest.approx(ours.relative_gap)
    assert ours.beckmann == pytest.approx(theirs.beckmann, rel=1e-6)
    assert ours.volume == pytest.approx(theirs.volume, rel=1e-2)
