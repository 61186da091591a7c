"""The fleet file (launcher.fleet.profiles): what it assigns, when clients are online, and its one-line errors."""

from __future__ import annotations

import re
import textwrap

import pytest

from contract.errors import InputError
from launcher.fleet.profiles import UNCONSTRAINED, FleetError, read_fleet_file
from launcher.fleet.units import parse_duration, parse_rate, parse_size

GOOD = """\
[[profile]]
name = "pi4-wifi"
clients = 3
cpu = 0.3
memory = "900MiB"
down = "8Mbit"
up = "512kbit"
latency = "40ms"
loss = 0.01
availability = 0.8

[[profile]]
name = "jetson"
clients = "rest"
cpu = 1
memory = "1GiB"
down = "2MB/s"
up = "1Gbit"
latency = "0.2s"

[[profile]]
name = "phone"
clients = 2
memory = "512MB"
trace = "phone.csv"
"""


def write(tmp_path, text: str, name: str = "fleet.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_profiles_take_clients_in_order_with_values_in_si_units(tmp_path):
    write(tmp_path, "client,start_s,end_s\n10,0,10\n10,20,30\n11,5,6\n", "phone.csv")
    fleet = read_fleet_file(write(tmp_path, GOOD), num_clients=12)
    names = [fleet.profile_of(c).name for c in range(12)]
    assert names == ["pi4-wifi"] * 3 + ["jetson"] * 7 + ["phone"] * 2  # "rest": 12 - 3 - 2, in its place
    pi, jetson, phone = fleet.profiles
    assert (pi.clients, jetson.clients, phone.clients) == (range(0, 3), range(3, 10), range(10, 12))
    assert pi.cpu == 0.3 and pi.memory == 900 * 2 ** 20 and pi.down == 8_000_000 and pi.up == 512_000
    assert pi.latency == pytest.approx(0.040) and pi.loss == 0.01 and pi.availability == 0.8 and pi.trace is None
    assert jetson.cpu == 1.0 and jetson.memory == 2 ** 30 and jetson.down == 16_000_000 and jetson.up == 1e9
    assert jetson.latency == pytest.approx(0.2) and jetson.loss == 0.0 and jetson.availability is None
    assert phone.memory == 512_000_000 and phone.cpu is None and phone.down is None and not phone.shapes_link
    assert pi.line == 1 and jetson.line == 12 and phone.line == 21
    assert fleet.as_record()["profiles"][1]["clients"] == [3, 10]
    with pytest.raises(IndexError):
        fleet.profile_of(12)


def test_clients_no_profile_takes_are_unconstrained(tmp_path):
    fleet = read_fleet_file(write(tmp_path, '[[profile]]\nname = "a"\nclients = 2\ncpu = 0.5\n'), num_clients=4)
    assert [fleet.profile_of(c).name for c in range(4)] == ["a", "a", "unconstrained", "unconstrained"]
    assert fleet.profile_of(3) is UNCONSTRAINED and UNCONSTRAINED.cpu is None and UNCONSTRAINED.memory is None
    assert not UNCONSTRAINED.shapes_link and fleet.online(3, 1, seed=0) and fleet.online_at(3, 5.0)


def test_rest_may_be_empty_and_sits_where_it_is_written(tmp_path):
    text = '[[profile]]\nname = "a"\nclients = "rest"\n[[profile]]\nname = "b"\nclients = 2\n'
    fleet = read_fleet_file(write(tmp_path, text), num_clients=5)
    assert [fleet.profile_of(c).name for c in range(5)] == ["a", "a", "a", "b", "b"]
    assert read_fleet_file(tmp_path / "fleet.toml", num_clients=2).profiles[0].clients == range(0)


def test_availability_is_reproducible_independent_and_near_its_share(tmp_path):
    text = '[[profile]]\nname = "half"\nclients = 10\navailability = 0.5\n'
    fleet = read_fleet_file(write(tmp_path, text), num_clients=10)
    grid = [[fleet.online(c, r, seed=42) for c in range(10)] for r in range(40)]
    assert grid == [[fleet.online(c, r, seed=42) for c in range(10)] for r in range(40)]
    share = sum(map(sum, grid)) / 400
    print(f"availability 0.5 over 40 rounds x 10 clients: {share:.3f} online")
    assert 0.4 <= share <= 0.6
    other = [[fleet.online(c, r, seed=43) for c in range(10)] for r in range(40)]
    assert other != grid  # the seed matters
    assert len({tuple(row) for row in grid}) > 30  # rounds differ from each other
    assert len({tuple(grid[r][c] for r in range(40)) for c in range(10)}) == 10  # so do clients
    always = read_fleet_file(write(tmp_path, '[[profile]]\nname = "x"\nclients = 2\navailability = 1\n', "b.toml"), 2)
    never = read_fleet_file(write(tmp_path, '[[profile]]\nname = "x"\nclients = 2\navailability = 0\n', "c.toml"), 3)
    assert all(always.online(c, r, 1) for c in range(2) for r in range(50))
    assert not any(never.online(c, r, 1) for c in range(2) for r in range(50))
    assert all(never.online(2, r, 1) for r in range(50))  # a client without a profile: always


def test_a_trace_gives_online_windows(tmp_path):
    write(tmp_path, "# client,start_s,end_s\n1,0,10\n1,20,30.5\n2,5,6\n", "t.csv")
    text = '[[profile]]\nname = "a"\nclients = 1\n[[profile]]\nname = "traced"\nclients = 2\ntrace = "t.csv"\n'
    fleet = read_fleet_file(write(tmp_path, text), num_clients=4)
    online = {t: fleet.online_at(1, t) for t in (0, 9.99, 10, 15, 20, 30.4, 30.5, 100)}
    assert online == {0: True, 9.99: True, 10: False, 15: False, 20: True, 30.4: True, 30.5: False, 100: False}
    assert [fleet.online_at(2, t) for t in (4.9, 5, 5.5, 6)] == [False, True, True, False]
    assert fleet.online_at(0, 1e6) and fleet.online_at(3, 1e6)  # no trace: always online
    assert fleet.online(1, 3, seed=0)  # rounds do not apply to a trace profile
    assert len(fleet.profiles[1].trace) == 3


BAD = [  # (fleet file, extra files, clients in the run, line, words in the message)
    ('[[profile]]\nname = "a"\nclients = 2\ncolor = "red"\n', {}, 4, 4, "unknown key 'color'"),
    ('title = "x"\n[[profile]]\nname = "a"\nclients = 1\n', {}, 4, 1, "unknown key 'title'"),
    ('[[profile]]\nname = "a"\nclients = 3\n[[profile]]\nname = "b"\nclients = 2\n', {}, 4, 6, "the run has 4"),
    ('[[profile]]\nname = "a"\nclients = 5\n', {}, 4, 3, "the run has 4"),
    ('[[profile]]\nname = "a"\nclients = 1\ncpu = 1.5\n', {}, 4, 4, "cpu 1.5 is outside 0.01..1"),
    ('[[profile]]\nname = "a"\nclients = 1\ncpu = 0.001\n', {}, 4, 4, "cpu 0.001 is outside 0.01..1"),
    ('[[profile]]\nname = "a"\nclients = 1\ncpu = "half"\n', {}, 4, 4, "cpu must be a number"),
    ('[[profile]]\nname = "a"\nclients = 1\n\n\n[[profile]]\nname = "b"\nclients = 1\ntrace = "t.csv"\n',
     {"t.csv": "1,0,5\n7,0,5\n"}, 4, None, "t.csv:2: client 7 does not exist"),
    ('[[profile]]\nname = "a"\nclients = 1\ntrace = "t.csv"\n', {"t.csv": "2,0,5\n"}, 4, None,
     "t.csv:1: client 2 is not one of the clients of profile 'a'"),
    ('[[profile]]\nname = "a"\nclients = 1\ntrace = "t.csv"\n', {"t.csv": "0,ten,5\n"}, 4, None,
     "t.csv:1: cannot read"),
    ('[[profile]]\nname = "a"\nclients = 1\ntrace = "t.csv"\n', {"t.csv": "0,5,1\n"}, 4, None, "t.csv:1: a window"),
    ('[[profile]]\nname = "a"\nclients = 1\ntrace = "missing.csv"\n', {}, 4, 4, "cannot read the trace"),
    ('[[profile]]\nname = "a"\nclients = 1\ntrace = "t.csv"\n', {"t.csv": "client,start_s,end_s\n"}, 4, None,
     "t.csv: the trace has no client,start_s,end_s row: the clients of profile 'a' (0..0) would never be online"),
    ('[[profile]]\nname = "a"\nclients = 2\navailability = 0\n', {}, 2, None, "no client of the run is ever online"),
    ('[[profile]]\nname = "a"\nclients = 1\nmemory = "lots"\n', {}, 4, 4, "cannot read size 'lots'"),
    ('[[profile]]\nname = "a"\nclients = 1\nmemory = "9Mb"\n', {}, 4, 4, "unknown unit 'Mb'"),
    ('[[profile]]\nname = "a"\nclients = 1\ndown = "8 furlongs"\n', {}, 4, 4, "cannot read rate"),
    ('[[profile]]\nname = "a"\nclients = 1\nup = 8000000\n', {}, 4, 4, "needs a unit"),
    ('[[profile]]\nname = "a"\nclients = 1\nup = "0Mbit"\n', {}, 4, 4, "above zero"),
    ('[[profile]]\nname = "a"\nclients = 1\nlatency = "40 parsecs"\n', {}, 4, 4, "cannot read duration"),
    ('[[profile]]\nname = "a"\nclients = 1\nloss = 1.2\n', {}, 4, 4, "loss 1.2 is outside 0..1"),
    ('[[profile]]\nname = "a"\nclients = 1\navailability = -0.1\n', {}, 4, 4, "availability -0.1 is outside"),
    ('[[profile]]\nname = "a"\nclients = 1\navailability = 0.5\ntrace = "t.csv"\n', {"t.csv": "0,0,1\n"}, 4, 5,
     "both availability and trace"),
    ('[[profile]]\nname = "a"\nclients = 1\n[[profile]]\nname = "a"\nclients = 1\n', {}, 4, 5,
     "duplicate profile name 'a' (first at line 2)"),
    ('[[profile]]\nname = "a"\nclients = "rest"\n[[profile]]\nname = "b"\nclients = "rest"\n', {}, 4, 6,
     "a second profile takes the rest"),
    ('[[profile]]\nname = "a"\nclients = 0\n', {}, 4, 3, "clients must be a count"),
    ('[[profile]]\nname = "a"\ncpu = 0.5\n', {}, 4, 1, "has no clients"),
    ('[[profile]]\nclients = 1\n', {}, 4, 1, "without a name"),
    ('[[profile]]\nname = "a"\nclients = 1\ncpu = \n', {}, 4, 4, "Invalid value"),
    ('', {}, 4, 1, "no [[profile]] tables"),
]


@pytest.mark.parametrize("text, files, num_clients, line, words", BAD, ids=[b[4][:40] for b in BAD])
def test_a_bad_fleet_file_is_one_line_naming_file_and_line(tmp_path, text, files, num_clients, words, line):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    path = write(tmp_path, text)
    with pytest.raises(FleetError) as caught:
        read_fleet_file(path, num_clients)
    message = str(caught.value)
    assert isinstance(caught.value, InputError)
    assert "\n" not in message and words in message, message
    if line is not None:
        assert message.startswith(f"{path}:{line}: "), message
    else:
        assert re.match(rf"^{re.escape(str(tmp_path))}/\S+?(:\d+)?: ", message), message


def test_an_unreadable_fleet_file_names_the_file(tmp_path):
    with pytest.raises(FleetError, match=r"fleet\.toml: cannot read the fleet file"):
        read_fleet_file(tmp_path / "fleet.toml", 4)


def test_units_against_hand_computed_values():
    assert parse_size("1GiB") == 1073741824 and parse_size("1.5kB") == 1500 and parse_size(4096) == 4096
    assert parse_rate("512kbit") == 512000 and parse_rate("1Gbit") == 10 ** 9 and parse_rate("2MB/s") == 16e6
    assert parse_rate("100Mbps") == 1e8 and parse_rate("250kB/s") == 2e6
    assert parse_duration("40ms") == pytest.approx(0.04) and parse_duration("0.2s") == 0.2
    assert parse_duration(1) == 1.0 and parse_duration("250us") == pytest.approx(0.00025)
