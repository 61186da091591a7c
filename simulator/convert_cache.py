"""Converted data sets kept between runs: a data set converted once is linked into later runs, not converted again.

    cache = ConversionCache.default()     # None when FL_LAUNCH_CACHE=off
    counts = cache.provide(slot, identity, 50, "run/data", convert)   # convert(folder) -> counts, on a miss only

Where: ``$FL_LAUNCH_CACHE``, else ``$XDG_CACHE_HOME/fl-launch``, else ``~/.cache/fl-launch``;
clearing it is removing that folder. One entry per data set and conversion (``slot``: the source's
resolved path and the parameters that change the output, e.g. the split's seed), holding
``client_<i>.npz`` and ``manifest.json``. The manifest records the source files' ``identity``
(path, size, mtime of each) and each client file's size: an entry whose identity differs (a file
changed, added or removed), that holds fewer clients than asked, or whose files are missing or of
another size is built again and replaces it.

An entry is built in a temporary folder next to it, the run's files are linked from there, then it is
renamed into place (two runs filling one slot at once each convert and the last rename wins; a crash
leaves only a temporary folder, removed by a later fill once its process is gone). A run's files are hard
links (copies across file systems), so removing the cache while a run goes on, or before ``--resume``,
takes nothing from the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.run_layout import partition_file

ENV = "FL_LAUNCH_CACHE"  # a folder, or "off"
FORMAT = 1  # of an entry; a new one when the conversion's output changes
MANIFEST = "manifest.json"


def cache_root() -> Path | None:
    """The cache's folder (not created here), or None when ``FL_LAUNCH_CACHE=off``."""
    given = os.environ.get(ENV, "")
    if given.lower() == "off":
        return None
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fl-launch"


def file_identity(paths: list[Path]) -> list[list]:
    """[resolved path, size, mtime_ns] of each file, in the order given."""
    out = []
    for path in paths:
        st = path.stat()
        out.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return out


def slot_name(kind: str, **params: object) -> str:
    """``kind-<hash>`` of what makes one conversion differ from another (source folder, seed, format)."""
    text = json.dumps({"format": FORMAT, "kind": kind, **params}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


@dataclass
class ConversionCache:
    root: Path

    @classmethod
    def default(cls) -> ConversionCache | None:
        root = cache_root()
        return cls(root) if root is not None else None

    def provide(self, slot: str, identity: object, num_clients: int, folder: str | Path,
                convert: Callable[[Path], list[int]]) -> list[int]:
        """Client 0..num_clients-1's files linked into ``folder`` from the entry, converted into it first if need be."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        entry = self.root / slot
        counts = _valid_counts(entry, identity, num_clients)
        if counts is not None:
            try:
                _link_clients(entry, folder, num_clients)
                return counts
            except OSError:  # replaced or removed while linking: convert as if it were not there
                _unlink_clients(folder, num_clients)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _remove_orphans(self.root, slot)
            building = self.root / f"{slot}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            building.mkdir()
        except OSError:  # no cache where it is asked for: convert into the run as without one
            return convert(folder)
        try:
            counts = convert(building)
            _write_manifest(building, identity, counts)
            _link_clients(building, folder, num_clients)
            _publish(building, entry)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return counts


def _valid_counts(entry: Path, identity: object, num_clients: int) -> list[int] | None:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or manifest.get("identity") != identity:
            return None
        counts, sizes = manifest["counts"], manifest["sizes"]
        if len(counts) < num_clients or len(sizes) != len(counts):
            return None
        if any(partition_file(entry, i).stat().st_size != sizes[i] for i in range(num_clients)):
            return None
        return [int(c) for c in counts[:num_clients]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_manifest(folder: Path, identity: object, counts: list[int]) -> None:
    sizes = [partition_file(folder, i).stat().st_size for i in range(len(counts))]
    manifest = {"format": FORMAT, "identity": identity, "counts": counts, "sizes": sizes}
    with open(folder / MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
        fh.flush()
        os.fsync(fh.fileno())


def _link_clients(entry: Path, folder: Path, num_clients: int) -> None:
    for i in range(num_clients):
        src, dst = partition_file(entry, i), partition_file(folder, i)
        try:
            os.link(src, dst)
        except OSError as err:
            if not src.exists():
                raise
            if dst.exists():
                raise FileExistsError(f"{dst} exists") from err
            shutil.copyfile(src, dst)  # another file system, or no hard links there


def _unlink_clients(folder: Path, num_clients: int) -> None:
    for i in range(num_clients):
        partition_file(folder, i).unlink(missing_ok=True)


def _publish(building: Path, entry: Path) -> None:
    """Rename the built entry into place; an older one is moved aside first (a folder is not renamed over another)."""
    aside = entry.with_name(f"{entry.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        entry.rename(aside)
    except FileNotFoundError:
        aside = None
    except OSError:
        return  # another run is replacing it now: its entry will do
    try:
        building.rename(entry)
    except OSError:
        pass  # another run put its own in between: kept
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _remove_orphans(root: Path, slot: str) -> None:
    """Temporary folders of this slot left by processes that are gone (a crash mid-fill)."""
    for path in root.glob(f"{slot}.*-*-*"):
        try:
            pid = int(path.name.rsplit("-", 2)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue
