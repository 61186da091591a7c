"""fl-launch --check --bench on the namespace devices: a fleet.toml of them, and its CPU figure against a CPU quota."""

from pathlib import Path

import pytest

from launcher.devices.bench import Compute, DeviceBench, Link, fleet_toml
from launcher.fleet.profiles import read_fleet
from tests import devices as lab_devices
from tests.devices import CPU_ROOT, THIS_CHECKOUT, cpu_group
from tests.helpers import run

needs_lab = pytest.mark.skipif(lab_devices.available() is not None, reason=str(lab_devices.available()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_devices.make_devices(tmp_path_factory.mktemp("lab"), 2) as lab:
        yield lab


def bench(lab, tmp_path, slots=2):
    result = run("fl-launch", "--hosts", str(lab.hosts_file(slots=slots, extra=THIS_CHECKOUT)), "--ssh-config",
                 str(lab.ssh_config), "--check", "--bench", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    path = tmp_path / "fleet.toml"
    path.write_text(result.stdout)
    return result, read_fleet(path, num_clients=slots * len(lab.devices))


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable")


@needs_lab
@pytest.mark.slow
def test_bench_prints_a_fleet_file_with_one_profile_per_device(lab, tmp_path):
    result, fleet = bench(lab, tmp_path, slots=2)
    assert "devices in" in result.stderr and "devices in" not in result.stdout  # the table on stderr
    assert [p.name for p in fleet.profiles] == ["dev0", "dev1"]
    assert [p.clients for p in fleet.profiles] == [range(0, 2), range(2, 4)]
    free = mem_available()  # the namespaces share this machine's memory
    for profile in fleet.profiles:
        assert 0.01 <= profile.cpu <= 1.0
        assert 0.7 * free < profile.memory < 1.3 * free, (profile.memory, free)
        assert profile.down > 10e6 and profile.up > 10e6  # a veth pair through ssh: far above 10 Mbit/s
        assert 0 < profile.latency < 0.05
    print(result.stdout)


@pytest.fixture
def half_core(lab):
    """dev0's sshd (the namespace's init: unshare's child) and all it starts held to 0.5 core by a cgroup v1
    cpu quota (50000 of 100000 us); dev1's in a group of its own without a quota."""
    if not (CPU_ROOT / "cpu.cfs_quota_us").exists():
        pytest.skip("no cgroup v1 cpu controller")
    held, whole = (device.tree() for device in lab.devices)
    with cpu_group("held", held, 50000) as group, cpu_group("whole", whole, None):
        yield group


@needs_lab
@pytest.mark.slow
def test_a_device_held_to_half_a_core_measures_half_the_cpu_of_the_other(lab, tmp_path, half_core):
    held = set(lab.devices[0].tree())
    assert held <= {int(p) for p in (half_core / "cgroup.procs").read_text().split()}
    ratios = []
    for _ in range(3):  # other tests share this machine's two cores: a busy moment may spoil one measurement
        result, fleet = bench(lab, tmp_path, slots=1)
        limited, free = fleet.profiles
        print(result.stdout)
        ratios.append(limited.cpu / free.cpu)
        if 0.5 * 0.75 <= ratios[-1] <= 0.5 * 1.25:
            break
    throttled = int(dict(line.split() for line in (half_core / "cpu.stat").read_text().splitlines())["nr_throttled"])
    assert throttled > 0  # the device's batches really ran under the quota
    assert 0.5 * 0.75 <= ratios[-1] <= 0.5 * 1.25, ratios


@pytest.fixture
def shaped_link(lab):
    """dev1's link held by a token bucket each way: 16 Mbit/s down (to the device), 8 up (from it)."""
    with lab.devices[1].shaped("16mbit", "8mbit"):
        yield 16e6, 8e6


@pytest.fixture
def delayed_config(lab, tmp_path):
    """An ssh config whose dev0 goes through a relay that holds every chunk 30 ms each way (ProxyCommand)."""
    return lab.delayed_config(tmp_path, {lab.devices[0].name: 0.03}), 0.03


@needs_lab
@pytest.mark.slow
def test_links_delayed_or_held_by_a_token_bucket_measure_as_they_are_held(lab, tmp_path, delayed_config,
                                                                          shaped_link):
    """dev0: 30 ms each way in a relay (the kernel has no netem); dev1: a token bucket each way (tc tbf), the
    device's download (down: this machine to it) twice its upload, as a fleet file means them."""
    (config, delay), (down, up) = delayed_config, shaped_link
    result = run("fl-launch", "--hosts", str(lab.hosts_file(slots=1, extra=THIS_CHECKOUT)), "--ssh-config", str(config),
                 "--check", "--bench", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    (tmp_path / "fleet.toml").write_text(result.stdout)
    delayed, shaped = read_fleet(tmp_path / "fleet.toml", num_clients=2).profiles
    assert delay * 0.95 <= delayed.latency <= delay * 1.3, delayed.latency
    assert shaped.latency < 0.01
    # TCP/IP and SSH framing take a few percent of what the bucket lets through
    assert 0.8 * down <= shaped.down <= 1.1 * down, shaped.down
    assert 0.8 * up <= shaped.up <= 1.1 * up, shaped.up
    assert delayed.down > 5 * up and delayed.up > 5 * up  # the relay's link is not held to a rate


def test_bench_without_check_is_one_line_and_exit_2(tmp_path):
    hosts = tmp_path / "devices.toml"
    hosts.write_text('[[device]]\nhost = "nowhere"\n')
    result = run("fl-launch", "--hosts", str(hosts), "--bench", timeout=60)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "--bench" in result.stderr and "--check" in result.stderr


def test_the_fleet_file_written_reads_back_with_safe_unique_names(tmp_path):
    here = Compute((3, 32, 32), 10, 32, batches=100, wall=0.5, cpu=0.5)  # 5 ms a batch
    link = Link(down=8e6, up=2.5e5, rtt=0.08, down_bytes=1, up_bytes=1)
    benches = [DeviceBench("fe80::1", 3, 900 * 2**20, Compute((3, 32, 32), 10, 32, 10, 0.2, 0.2), link),  # 20 ms
               DeviceBench("fe80..1", 1, None, Compute((3, 32, 32), 10, 32, 100, 0.4, 0.4), link),     # faster
               DeviceBench("slow", 2, 2**30, Compute((3, 32, 32), 10, 32, 1, 10.0, 10.0), link),      # 10 s
               DeviceBench("gone", 5, problem="unreachable: no route\nto host")]
    path = tmp_path / "fleet.toml"
    path.write_text(fleet_toml(benches, here))
    fleet = read_fleet(path, num_clients=6)
    assert [(p.name, p.clients) for p in fleet.profiles] == [("fe80--1", range(0, 3)), ("fe80..1", range(3, 4)),
                                                             ("slow", range(4, 6))]
    assert [p.cpu for p in fleet.profiles] == [0.25, 1.0, 0.01]  # 5/20; capped; floored
    assert [p.memory for p in fleet.profiles] == [900 * 2**20, None, 2**30]
    assert all((p.down, p.up, p.latency) == (8e6, 2.5e5, 0.04) for p in fleet.profiles)
    assert "# gone: not measured: unreachable: no route to host" in path.read_text()
