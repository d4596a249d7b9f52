"""The layers of archive_node, checked on every import: pynetdicom only in net/, peewee only in
index/, click only in the CLI, and no module importing from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "archive_node"

# Bottom to top: a module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "progress", "dicom", "logs"},
    {"rules", "config"},
    {"storage", "index"},
    {"registry", "committing", "auditing", "metrics"},
    {"service", "integrity", "correcting", "ordering"},
    {"importing"},
    {"net"},
    {"cli", "__main__"},
]
# Third-party packages that only one part of the package may import.
ONLY_IN = {
    "pynetdicom": ("net",),
    "peewee": ("index",),
    "playhouse": ("index",),
    "click": ("cli",),
    "hl7": ("rules", "net"),
    "prometheus_client": ("metrics",),
}
# Inside net/, the patches are the bottom: they use the wire encoders and what every
# association shares, never the SCPs, the server or the service above them.
PATCHES_MAY_IMPORT = {"net.patches", "net.wire", "net.association"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module imported, line) of every import in `path`, archive_node's own as names
    relative to the package ("index.tables"), third-party ones as they are written."""
    here = _name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
                if module == "archive_node" or module.startswith("archive_node."):
                    module = module.removeprefix("archive_node").lstrip(".")
                    names = [f"{module}.{a.name}".lstrip(".") for a in node.names]
                    found += [(name, node.lineno) for name in names]
                else:
                    found.append((module, node.lineno))
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module:
                found.append((module, node.lineno))
            else:  # from . import x: x is a module of that package
                found += [(f"{module}.{a.name}".lstrip("."), node.lineno) for a in node.names]
    return found


def _layer(module: str) -> int | None:
    top = module.split(".")[0]
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def _is_own(module: str) -> bool:
    return _layer(module) is not None or module == "__init__" or module == ""


def test_every_module_is_in_a_layer():
    assert [_name(p) for p in _modules() if _layer(_name(p)) is None] == ["__init__"]


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_imports_go_down_only(path):
    me = _name(path)
    mine = _layer(me)
    wrong = []
    for module, line in _imports(path):
        top = module.split(".")[0]
        allowed = ONLY_IN.get(top)
        if allowed is not None and me.split(".")[0] not in allowed:
            wrong.append(f"line {line}: {module} (only {', '.join(allowed)} may import it)")
        if mine is None or not _is_own(module) or module in ("", "__init__"):
            continue
        theirs = _layer(module)
        if theirs is not None and theirs > mine:
            wrong.append(f"line {line}: {module} is above {me}")
        patch_reaching_up = me.startswith("net.patches") and module.startswith("net")
        if patch_reaching_up and not any(module.startswith(ok) for ok in PATCHES_MAY_IMPORT):
            wrong.append(f"line {line}: a patch imports {module}")
    assert wrong == []


def test_nothing_imports_the_cli():
    """Nothing but the entry point and the CLI's own modules (cli/ is a package)."""
    users = [
        _name(p)
        for p in _modules()
        if any(m.split(".")[0] == "cli" for m, _ in _imports(p))
        and _name(p) != "__main__"
        and _name(p).split(".")[0] != "cli"
    ]
    assert users == []


def test_every_module_opens_with_a_docstring():
    bare = [_name(p) for p in _modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert bare == []
