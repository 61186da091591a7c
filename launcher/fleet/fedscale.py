"""FedScale's device traces as a fleet: its capacity and behaviour pickles in, fleet.toml and a trace CSV out.

    python -m launcher.fleet.fedscale client_device_capacity client_behave_trace --reference 12 \
        --clients 40 --out myfleet          # myfleet/fleet.toml, myfleet/fedscale-trace.csv
    fl-launch --client-num 40 --fleet myfleet/fleet.toml ...

FedScale's files (as its aggregator and ClientMetadata read them, fedscale/cloud/):
- device capacity: a pickled dict client id -> {'computation': the device's inference latency in ms per
  sample, 'communication': its bandwidth in kbit/s}; FedScale's round takes 3 x batch x steps x computation
  / 1000 s of compute and (download + upload) kbit / communication of transfer.
- behaviour: a pickled dict client id -> {'active': [s, ...], 'inactive': [s, ...], 'finish_time': s, ...}:
  online from active[i] to inactive[i], the windows repeating every finish_time seconds.

The fleet: client c of the run takes the c-th entry of each file in the order of its ids (wrapping around
when the run has more clients), a profile of its own: cpu = the reference device's computation / its own
(the reference, a capacity id the user names, is one full core of this machine; a faster device is held to
a full core, a slower one to at least 0.01), down = up = its communication, and its windows in the shared
trace file, unrolled from the run's first round over --horizon seconds (default: each client's finish_time).

Both files are read with an unpickler that builds nothing but plain data (dict, list, tuple, str, numbers,
bool, None): a pickle that would import or call anything is refused. Every error is one line and exit 2.
Why a command of its own, not an fl-launch option: it writes two files into a folder and starts no run
(`fl-launch --check --bench` prints one fleet file on stdout, next to a check of the devices).
"""

from __future__ import annotations

import argparse
import io
import math
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

from contract.errors import InputError
from launcher.fleet.units import format_rate

TRACE_FILE = "fedscale-trace.csv"
FLEET_FILE = "fleet.toml"
CPU_RANGE = (0.01, 1.0)  # the fleet file's cpu bounds (launcher.fleet.profiles)
MAX_WINDOWS = 1_000_000  # the trace CSV's rows at most: a horizon that would unroll more is refused
# What a FedScale pickle may hold besides the opcodes for dict, list, tuple, str, int, float, bool and None.
SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bool", "complex"})


class FedScaleError(InputError):
    """A FedScale file or option this converter cannot use."""


class _NotPlainData(pickle.UnpicklingError):
    pass


class _PlainData(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "builtins" and name in SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        raise _NotPlainData(f"it asks for {module}.{name}, which is not plain data")


def load_plain_pickle(path: Path, what: str) -> dict:
    """The pickle's top-level dict, built only of plain data; FedScaleError for anything else."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FedScaleError(f"{what} {path}: cannot read it ({err.strerror})") from None
    try:
        value = _PlainData(io.BytesIO(data)).load()
    except _NotPlainData as err:
        raise FedScaleError(f"{what} {path}: refused, {err}") from None
    except Exception as err:  # noqa: BLE001 (a damaged pickle raises anything: EOFError, ValueError, ...)
        raise FedScaleError(f"{what} {path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(value, dict) or not value:
        raise FedScaleError(f"{what} {path}: expected a non-empty dict of client id -> entry, found "
                            f"{type(value).__name__}")
    return value


@dataclass(frozen=True)
class Capacity:
    ms_per_sample: float
    kbit_s: float


@dataclass(frozen=True)
class Behaviour:
    windows: tuple[tuple[float, float], ...]  # (active, inactive) within one period
    period: float                             # finish_time


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FedScaleError(f"{where} must be a positive number, not {value!r}")
    return float(value)


def _seconds(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise FedScaleError(f"{where} must be a number of seconds from 0, not {value!r}")
    return float(value)


def read_capacity(path: Path) -> dict:
    """FedScale's device capacity file: id -> Capacity."""
    out = {}
    for key, entry in load_plain_pickle(path, "device capacity").items():
        where = f"device capacity {path}: client {key!r}"
        if not isinstance(entry, dict) or "computation" not in entry or "communication" not in entry:
            raise FedScaleError(f"{where}: expected {{'computation': ms, 'communication': kbit/s}}, not {entry!r}"
                                [:300])
        out[key] = Capacity(_positive(entry["computation"], f"{where} computation"),
                            _positive(entry["communication"], f"{where} communication"))
    return out


def read_behaviour(path: Path) -> dict:
    """FedScale's behaviour trace file: id -> Behaviour."""
    out = {}
    for key, entry in load_plain_pickle(path, "behaviour trace").items():
        where = f"behaviour trace {path}: client {key!r}"
        if not isinstance(entry, dict) or not all(k in entry for k in ("active", "inactive", "finish_time")):
            raise FedScaleError(f"{where}: expected {{'active': [...], 'inactive': [...], 'finish_time': s}}")
        active, inactive = entry["active"], entry["inactive"]
        if not isinstance(active, (list, tuple)) or not isinstance(inactive, (list, tuple)) \
                or len(active) != len(inactive):
            raise FedScaleError(f"{where}: 'active' and 'inactive' must be lists of the same length")
        period = _positive(entry["finish_time"], f"{where} finish_time")
        windows = []
        for start, end in zip(active, inactive):
            start, end = _seconds(start, f"{where} active"), _seconds(end, f"{where} inactive")
            if end <= start:
                raise FedScaleError(f"{where}: a window ends before it starts ({start:g} .. {end:g})")
            windows.append((start, end))
        out[key] = Behaviour(tuple(windows), period)
    return out


def _ids(entries: dict) -> list:
    """The ids in order: numbers by value, then the rest as text."""
    return sorted(entries, key=lambda k: (not isinstance(k, int), k if isinstance(k, int) else 0, str(k)))


def _reference(capacity: dict, name: str) -> Capacity:
    for key, value in capacity.items():
        if str(key) == name:
            return value
    raise FedScaleError(f"--reference {name}: no client {name} in the device capacity file "
                        f"({len(capacity)} clients)")


def unrolled(behaviour: Behaviour, horizon: float | None) -> list[tuple[float, float]]:
    """The windows over [0, horizon) (default: one period), clipped at the horizon."""
    end_at = behaviour.period if horizon is None else horizon
    out, shift = [], 0.0
    while shift < end_at:
        for start, end in behaviour.windows:
            a, b = shift + start, min(shift + end, end_at)
            if a < b:
                out.append((a, b))
        shift += behaviour.period
        if len(out) > MAX_WINDOWS:
            raise FedScaleError(f"--horizon {horizon:g}: more than {MAX_WINDOWS} windows; give a shorter horizon")
    return out


def convert(capacity_path: Path, behaviour_path: Path, reference: str, clients: int, out: Path,
            horizon: float | None = None) -> tuple[Path, Path]:
    """Write OUT/fleet.toml and OUT/fedscale-trace.csv (see the module's docstring)."""
    capacity = read_capacity(capacity_path)
    behaviour = read_behaviour(behaviour_path)
    ref = _reference(capacity, reference)
    ids, behaviour_ids = _ids(capacity), _ids(behaviour)
    toml, rows = [f"# FedScale's {capacity_path.name} and {behaviour_path.name} for {clients} clients; one full "
                  f"core of this machine is FedScale client {reference} ({ref.ms_per_sample:g} ms per sample)"], []
    for client in range(clients):
        cap, behave = capacity[ids[client % len(ids)]], behaviour[behaviour_ids[client % len(behaviour_ids)]]
        cpu = min(CPU_RANGE[1], max(CPU_RANGE[0], ref.ms_per_sample / cap.ms_per_sample))
        rate = format_rate(cap.kbit_s * 1000.0)
        toml += ["", "[[profile]]", f'name = "client-{client}-fedscale-{ids[client % len(ids)]}"', "clients = 1",
                 f"cpu = {cpu:.4g}", f'down = "{rate}"', f'up = "{rate}"', f'trace = "{TRACE_FILE}"']
        rows += [f"{client},{a:.6g},{b:.6g}" for a, b in unrolled(behave, horizon)]
    if not rows:
        raise FedScaleError(f"behaviour trace {behaviour_path}: no client is online within the horizon")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / TRACE_FILE).write_text("client,start_s,end_s\n" + "\n".join(rows) + "\n", encoding="utf-8")
        (out / FLEET_FILE).write_text("\n".join(toml) + "\n", encoding="utf-8")
    except OSError as err:
        raise FedScaleError(f"--out {out}: cannot write there ({err.strerror})") from None
    return out / FLEET_FILE, out / TRACE_FILE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's usage block is for --help)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m launcher.fleet.fedscale",
                     description="FedScale's device capacity and behaviour traces as a fleet file and its trace.")
    parser.add_argument("capacity", type=Path, help="FedScale's device capacity pickle (client_device_capacity)")
    parser.add_argument("behaviour", type=Path, help="FedScale's behaviour trace pickle (client_behave_trace)")
    parser.add_argument("--reference", required=True,
                        help="the capacity file's client id whose device is one full core of this machine")
    parser.add_argument("--clients", type=int, required=True, help="the run's clients (fl-launch --client-num)")
    parser.add_argument("--out", type=Path, required=True, help="the folder for fleet.toml and the trace CSV")
    parser.add_argument("--horizon", type=float, default=None,
                        help="seconds of windows to write from the first round [default: one finish_time]")
    args = parser.parse_args(argv)
    if args.clients < 1:
        parser.error(f"--clients must be at least 1, not {args.clients}")
    if args.horizon is not None and not (math.isfinite(args.horizon) and args.horizon > 0):
        parser.error(f"--horizon must be a positive number of seconds, not {args.horizon:g}")
    try:
        fleet, trace = convert(args.capacity, args.behaviour, args.reference, args.clients, args.out, args.horizon)
    except InputError as err:
        parser.error(" ".join(str(err).split()))
    print(f"wrote {fleet} and {trace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
