"""What --install carries to a device: the walk of the wheel's requirements against the device's Python."""

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from launcher.devices.install import InstallError, fetch
from launcher.pyenv.python_facts import marker_environment
from launcher.pyenv.wheel_needs import DeviceFacts, MissingWheel, download_target, missing, read_constraints

PI_MARKERS = dict(marker_environment(), platform_machine="aarch64", python_version="3.11",
                  python_full_version="3.11.2", sys_platform="linux", platform_system="Linux")


def device(installed: dict, markers: dict = PI_MARKERS, platform="linux-aarch64", libc=("glibc", "2.36")):
    return DeviceFacts(python="3.11.2", implementation="cpython", abiflags="", platform=platform, libc=libc,
                       markers=markers, pip=True, installed=installed)


def dist(version: str, *requires: str) -> dict:
    return {"version": version, "requires": list(requires)}


HERE = {  # this environment, as launcher.pyenv.python_facts.installed() lists it
    "app": dist("1.0", "lib[fast]>=2", "tool", 'armonly; platform_machine == "aarch64"',
                'x86only; platform_machine == "x86_64"'),
    "lib": dist("2.5", 'speedup==3.0; extra == "fast"', "base"),
    "speedup": dist("3.0"),
    "base": dist("1.1"),
    "tool": dist("0.9", "base>=1"),
    "armonly": dist("4.0"),
    "x86only": dist("5.0"),
}


def requirements(needs):
    return [n.requirement for n in needs]


def test_an_empty_device_needs_everything_its_markers_and_extras_select(tmp_path):
    needs = missing(["app"], {}, device({}), HERE)
    # x86only is for another machine; speedup comes with lib[fast]; each pinned to the version here
    assert requirements(needs) == ["app==1.0", "armonly==4.0", "base==1.1", "lib==2.5", "speedup==3.0", "tool==0.9"]
    assert not any(n.with_dependencies for n in needs)


def test_what_the_device_holds_in_range_stays_and_its_own_requirements_are_followed():
    on_device = {"lib": dist("2.1", "oldbase"), "tool": dist("0.9", "base>=1"), "base": dist("1.0")}
    needs = missing(["lib>=2", "tool"], {}, device(on_device), dict(HERE, oldbase=dist("7.0")))
    assert requirements(needs) == ["oldbase==7.0"]  # the device's lib 2.1 needs oldbase, not speedup


def test_constraints_replace_a_device_copy_out_of_range(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pins\nbase==1.1  # the one measured\n")
    on_device = device({"tool": dist("0.9", "base"), "base": dist("1.0")})
    needs = missing(["tool"], read_constraints(constraints), on_device, HERE)
    assert requirements(needs) == ["base==1.1"]


def test_nothing_here_fits_so_pip_fetches_it_with_its_dependencies():
    (need,) = missing(["base>=2"], {}, device({}), HERE)
    assert need.requirement == "base>=2" and need.with_dependencies


def test_the_probe_run_by_another_interpreter_reads_that_interpreter(tmp_path):
    """The same source the launcher sends over ssh, run by a bare virtualenv's Python: no pip, nothing installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    source = (Path(__file__).parents[1] / "launcher" / "pyenv" / "python_facts.py").read_text()
    out = subprocess.run([str(tmp_path / "v" / "bin" / "python"), "-I", "-c", source], capture_output=True, text=True,
                         check=True).stdout
    facts = DeviceFacts.parse(out)
    assert facts.pip is False and facts.installed == {}
    assert facts.python == ".".join(map(str, sys.version_info[:3]))
    assert json.loads(out)["markers"]["python_version"] == f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_download_flags_name_the_devices_interpreter_and_every_manylinux_it_runs():
    flags = download_target(device({}, libc=("glibc", "2.31")))
    platforms = [flags[i + 1] for i, f in enumerate(flags) if f == "--platform"]
    assert "manylinux_2_31_aarch64" in platforms and "manylinux_2_17_aarch64" in platforms
    assert "manylinux2014_aarch64" in platforms and "linux_aarch64" in platforms
    assert "manylinux_2_32_aarch64" not in platforms and not any("x86_64" in p for p in platforms)
    assert flags[flags.index("--python-version") + 1] == "3.11" and "cp311" in flags


def test_a_platform_without_wheels_is_one_line_naming_it(tmp_path):
    armv7 = device({}, platform="linux-armv7l", libc=("glibc", "2.31"))
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("")
    with pytest.raises(InstallError) as err:  # psutil publishes no armv7 wheel
        fetch([MissingWheel(f"psutil=={version('psutil')}", False)], armv7, constraints, tmp_path / "wheels")
    text = str(err.value)
    assert "\n" not in text and "linux-armv7l" in text and "psutil" in text, text
    assert list((tmp_path / "wheels").glob("*")) == []
