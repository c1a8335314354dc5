"""The TNTP files: reading, a flow round trip, and clear errors on malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulation.traffic import tntp
from simulation.traffic.assignment import assign
from simulation.traffic.errors import TrafficInputError

NET = """<NUMBER OF ZONES> 2
<NUMBER OF NODES> 3
<FIRST THRU NODE> 1
<NUMBER OF LINKS> 3
<DISTANCE FACTOR> 0.5
<END OF METADATA>

~ init_node term_node capacity length free_flow_time b power speed toll link_type ;
\t1\t3\t1000\t8\t10\t0.15\t4\t0\t0\t1\t;
\t3\t2\t1e9\t0\t0\t0\t4\t0\t0\t1\t;
\t1\t2\t4000\t12\t15\t0.15\t4\t0\t0\t1\t;
"""
TRIPS = """<NUMBER OF ZONES> 2
<TOTAL OD FLOW> 3000.0
<END OF METADATA>

Origin 1
    1 :      0.0;     2 :   3000.0;

Origin 2
    1 :      0.0;
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_net_and_trips_are_read(tmp_path):
    network = tntp.read_net(write(tmp_path, "t_net.tntp", NET), length_km=2.0)
    assert network.num_nodes == 3 and network.num_zones == 2 and network.through_zones
    assert network.init_node.tolist() == [0, 2, 0]
    assert network.term_node.tolist() == [2, 1, 1]
    assert network.capacity.tolist() == [1000.0, 1e9, 4000.0]
    assert network.length_km.tolist() == [16.0, 0.0, 24.0]
    assert network.fixed_cost.tolist() == [4.0, 0.0, 6.0]  # the file's distance factor
    assert tntp.read_net(write(tmp_path, "t_net.tntp", NET), length_cost=0.0).fixed_cost.sum() \
        == 0.0
    demand = tntp.read_trips(write(tmp_path, "t_trips.tntp", TRIPS), zones=2)
    assert demand.trips.tolist() == [[0.0, 3000.0], [0.0, 0.0]]


def test_first_thru_node_blocks_zones(tmp_path):
    text = NET.replace("<FIRST THRU NODE> 1", "<FIRST THRU NODE> 3")
    assert not tntp.read_net(write(tmp_path, "t_net.tntp", text)).through_zones


@pytest.mark.parametrize("suffix", [".tntp", ".csv"])
def test_flows_round_trip(tmp_path, suffix):
    network = tntp.read_net(write(tmp_path, "t_net.tntp", NET))
    demand = tntp.read_trips(write(tmp_path, "t_trips.tntp", TRIPS))
    result = assign(network, demand, gap=1e-8)
    out = tmp_path / f"flows{suffix}"
    tntp.write_flow(out, network, result)
    if suffix == ".csv":
        lines = out.read_text().splitlines()
        assert lines[0] == "init_node,term_node,flow,time,voc"
        rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
        assert rows[:, 2] == pytest.approx(result.volume, rel=1e-15)
        assert rows[:, 3] == pytest.approx(result.time, rel=1e-15)
        return
    back = tntp.read_flow(out)
    assert back.init_node.tolist() == [1, 3, 1] and back.term_node.tolist() == [3, 2, 2]
    assert back.volume == pytest.approx(result.volume, rel=1e-15)
    assert back.cost == pytest.approx(result.cost, rel=1e-15)


@pytest.mark.parametrize(("text", "message"), [
    ("garbage\n", "is this a TNTP file"),
    (NET.replace("<END OF METADATA>", ""), "is this a TNTP file"),
    (NET.replace("<NUMBER OF LINKS> 3", "<NUMBER OF LINKS> 4"), "says 4 but the file has 3"),
    (NET.replace("<NUMBER OF NODES> 3\n", ""), "lacks <NUMBER OF NODES>"),
    (NET.replace("\t3\t2\t1e9", "\t3\t9\t1e9"), r"t_net.tntp, line 10: term node 9 is not a "
                                                 r"node 1..3"),
    (NET.replace("\t1\t2\t4000", "\t1\t2\tlots"), "line 11: a field is not a number"),
    (NET.replace("\t1\t2\t4000", "\t1\t2\t-5"), "line 11: capacity must be positive"),
    (NET.replace("\t1\t3\t1000\t8\t10\t0.15\t4\t0\t0\t1", "\t1\t3\t1000"), "line 9: 3 fields"),
])
def test_bad_net_files_name_the_line(tmp_path, text, message):
    with pytest.raises(TrafficInputError, match=message):
        tntp.read_net(write(tmp_path, "t_net.tntp", text))


@pytest.mark.parametrize(("text", "message"), [
    (TRIPS.replace("<TOTAL OD FLOW> 3000.0", "<TOTAL OD FLOW> 10"), "add up to 3000"),
    (TRIPS.replace("2 :   3000.0", "5 :   3000.0"), "line 6: destination 5 is not a zone"),
    (TRIPS.replace("2 :   3000.0", "2 :   many"), "line 6: trips 'many' is not a number"),
    (TRIPS.replace("2 :   3000.0", "2    3000.0"), "expected 'destination : trips;'"),
    (TRIPS.replace("Origin 1\n", ""), "trips before the first 'Origin' line"),
])
def test_bad_trip_files_name_the_line(tmp_path, text, message):
    with pytest.raises(TrafficInputError, match=message):
        tntp.read_trips(write(tmp_path, "t_trips.tntp", text))


def test_trips_must_fit_the_network_and_files_must_exist(tmp_path):
    with pytest.raises(TrafficInputError, match="2 zones but the network has 24"):
        tntp.read_trips(write(tmp_path, "t_trips.tntp", TRIPS), zones=24)
    with pytest.raises(TrafficInputError, match="cannot read"):
        tntp.read_net(tmp_path / "missing_net.tntp")
    with pytest.raises(TrafficInputError, match="line 2: expected 'from to volume cost'"):
        tntp.read_flow(write(tmp_path, "f.tntp", "From To Volume Cost\n1 2 x 3\n"))
