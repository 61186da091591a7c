"""The direction of imports that launcher/__init__.py promises, checked on the source (every import, lazy ones too)."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"launcher.processes", "launcher.apps", "launcher.flower"}
ALLOWED = {  # package -> what it may import of ours (besides itself)
    "contract": set(),
    "partitions": {"contract"},
    "simulator": {"contract", "partitions"},
    "launcher.pyenv": set(),
    "launcher.stats": {"contract"},
    "launcher.flower": {"contract"},  # the one adapter to Flower: a leaf, nothing of ours above it
    "launcher.processes": {"launcher.flower", "launcher.pyenv", "contract"},
    "launcher.apps": {"launcher.processes", "launcher.flower", "launcher.pyenv", "contract"},
    "launcher.fleet": {"launcher.processes", "contract"},
    "launcher.devices": TOOLS | {"launcher.fleet", "launcher.pyenv", "contract"},
    "launcher.run": TOOLS | {"launcher.fleet", "launcher.devices", "launcher.stats", "launcher.pyenv", "contract",
                             "simulator", "partitions"},
    "launcher.cli": TOOLS | {"launcher.fleet", "launcher.run", "launcher.devices", "launcher.stats",
                             "launcher.pyenv", "contract", "simulator", "partitions"},
}


def package_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] == "launcher" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0] if parts[0] in ALLOWED else None


def imports_of(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from ([f"{node.module}.{a.name}" for a in node.names] if node.module == "launcher" else [node.module])
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_every_package_imports_only_what_its_layer_may():
    wrong = []
    files = [p for top in ("contract", "partitions", "simulator", "launcher") for p in (ROOT / top).rglob("*.py")]
    assert len(files) > 60
    for path in files:
        here = package_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if here is None or here == "launcher":
            continue
        for name in imports_of(path):
            there = package_of(name)
            if there is not None and there != here and there not in ALLOWED[here]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_each_package_says_its_job_in_its_docstring():
    for package in [p for p in ALLOWED if p.startswith("launcher.")] + ["contract"]:
        init = ROOT.joinpath(*package.split("."), "__init__.py")
        assert len(ast.get_docstring(ast.parse(init.read_text())) or "") > 60, package


def _sources():
    tops = ("contract", "partitions", "simulator", "launcher", "benchmarks")
    return [p for top in tops for p in (ROOT / top).rglob("*.py")]


def _holding(pattern: str) -> set[str]:
    """The source files (repository paths) whose text matches the regex."""
    found = re.compile(pattern, re.MULTILINE)
    return {p.relative_to(ROOT).as_posix() for p in _sources() if found.search(p.read_text())}


def test_one_module_reads_the_cgroup_hierarchies():
    """Mount points and a process's own group are read in launcher/processes/cgroup.py only; the fleet's limits
    build on it."""
    assert _holding(r"/proc/self/mounts|/proc/\{?[a-z]*\}?/cgroup\"") == {"launcher/processes/cgroup.py"}


def test_one_reader_of_a_users_toml_file_with_line_numbered_errors():
    """The fleet file, the hosts file and --config go through contract/user_toml.py; tomllib elsewhere only reads
    files the launcher or Flower write (node configs, an app's pyproject)."""
    readers = {"launcher/fleet/profiles.py", "launcher/devices/hosts.py", "launcher/cli/config_file.py"}
    assert readers <= _holding(r"from contract\.user_toml import")
    assert _holding(r"^import tomllib|^from tomllib") == {
        "contract/user_toml.py", "launcher/processes/nodes.py", "launcher/processes/node_config.py",
        "launcher/apps/requirements.py", "launcher/apps/user_app.py"}
    assert _holding(r"TOMLDecodeError") & readers == set()


def _short(package: str) -> str:
    return package.split(".")[-1]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_docstring_lists_its_modules_and_what_it_imports(package):
    """A newcomer reads a package's __init__.py first: every module it holds is named there (`name.py` or
    `name`), and every package of ours it imports (`fleet/`, `launcher.fleet`, `contract`)."""
    folder = ROOT.joinpath(*package.split("."))
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    unnamed = [p.stem for p in sorted(folder.glob("*.py"))
               if p.stem != "__init__" and not re.search(rf"(?<![\w.]){re.escape(p.stem)}(\.py)?\b", doc)]
    imported = {there for path in folder.rglob("*.py") for name in imports_of(path)
                if (there := package_of(name)) not in (None, package, "launcher")}
    unsaid = [there for there in sorted(imported)
              if not re.search(rf"\b{re.escape(_short(there))}(/|\b)", doc.split("Imports", 1)[-1] if "Imports" in doc
                               else doc)]
    assert (unnamed, unsaid) == ([], []), f"{package}: modules not named {unnamed}, imports not said {unsaid}"


def test_a_name_says_one_thing():
    """No class (and no public function but the patch modules' install/main) is defined in two modules, and no
    module beside a package of launcher/ takes that package's name (cli/'s command modules excepted)."""
    where: dict[str, list[str]] = {}
    files = [p for top in ("contract", "partitions", "simulator", "launcher") for p in (ROOT / top).rglob("*.py")]
    for path in files:
        for node in ast.parse(path.read_text()).body:
            public_function = isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
            if isinstance(node, ast.ClassDef) or (public_function and node.name not in ("main", "install")):
                where.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
    packages = {p.name for p in (ROOT / "launcher").iterdir() if (p / "__init__.py").is_file()}
    clashing = [p.relative_to(ROOT).as_posix() for top in ("contract", "simulator", "launcher", "benchmarks")
                for p in (ROOT / top).rglob("*.py") if p.stem in packages and p.parent.name != "cli"]
    assert clashing == []
