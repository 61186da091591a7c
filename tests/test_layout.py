"""The direction of imports that launcher/__init__.py promises, checked on the source (every import, lazy ones too)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"launcher.processes", "launcher.apps", "launcher.flower"}
ALLOWED = {  # package -> what it may import of ours (besides itself)
    "contract": set(),
    "partitions": {"contract"},
    "simulator": {"contract", "partitions"},
    "launcher.pyenv": set(),
    "launcher.stats": {"contract"},
    **{tool: TOOLS | {"launcher.pyenv", "contract"} for tool in TOOLS},
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
