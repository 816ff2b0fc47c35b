"""Package-wide rules from DESIGN.md, "Architecture": light imports, the layering, py.typed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import koopscope

PACKAGE_DIR = Path(koopscope.__file__).resolve().parent

# DESIGN.md, "Architecture": a package imports only from its own layer or lower.
LAYERS: dict[str, int] = {
    "errors": 1, "_linalg": 1, "_validation": 1, "_backend": 1,
    "dmd": 2,
    "spectral": 3,
    "capture": 4, "store": 4, "rmt": 4,
    # fingerprint sits beside profile and auditor, which build it (DESIGN.md lists it in layer 6; it needs
    # nothing above layer 4, and auditor.fingerprint() / profile.fingerprint() must be able to return one).
    "profile": 5, "shaping": 5, "koopman": 5, "auditor": 5, "fingerprint": 5,
    "gate": 6, "plot": 6,
    "cli": 7, "demo": 7,
}
# Private top-level helper modules (koopscope/_name.py) are layer-1 utilities unless listed above.
PRIVATE_LAYER = 1
# The facade koopscope/__init__.py re-exports every layer: only the top layer may import from it.
FACADE_LAYER = max(LAYERS.values())

HEAVY = ("torch", "transformers", "zarr", "matplotlib", "sklearn", "pydmd", "jsonschema", "jinja2", "huggingface_hub")


def test_import_koopscope_is_light() -> None:
    code = (
        "import sys, koopscope\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120)
    heavy = proc.stdout.strip()
    assert heavy == "", f"`import koopscope` imported optional dependencies: {heavy}"


def _top(path: Path) -> str:
    """The top-level unit of a source file: 'dmd' for koopscope/dmd/x.py, 'errors' for errors.py."""
    rel = path.relative_to(PACKAGE_DIR)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _layer(top: str) -> int | None:
    if top in LAYERS:
        return LAYERS[top]
    if top == "__init__":
        return FACADE_LAYER
    if top.startswith("_") and not top.startswith("__"):
        return PRIVATE_LAYER
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``source``, function-level imports included."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "koopscope":  # `from koopscope import dmd, __version__`
                found += [(node.lineno, f"koopscope.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, name))
    return found


def _target_layer(module: str) -> tuple[str, int | None]:
    parts = module.split(".")
    if len(parts) == 1:  # `import koopscope`: the facade
        return "__init__", FACADE_LAYER
    top = parts[1]
    if (PACKAGE_DIR / top).is_dir() or (PACKAGE_DIR / f"{top}.py").is_file() or top in LAYERS:
        return top, _layer(top)
    return "__init__", FACADE_LAYER  # a name re-exported by the facade, e.g. koopscope.__version__


def _sources() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_top(p) for p in _sources() if _layer(_top(p)) is None})
    assert not unknown, (
        f"koopscope module(s) {unknown} have no layer: add them to LAYERS in "
        "tests/test_architecture.py and to DESIGN.md, 'Architecture'"
    )


def _violations(top: str, module: str, imports: list[tuple[int, str]]) -> list[str]:
    own = _layer(top)
    out = []
    for line, imported in imports:
        if imported != "koopscope" and not imported.startswith("koopscope."):
            continue
        target, layer = _target_layer(imported)
        if own is not None and target != top and layer is not None and layer > own:
            out.append(f"{module}:{line} (layer {own}) imports {imported} (layer {layer})")
    return out


def test_no_module_imports_a_higher_layer() -> None:
    violations = []
    for path in _sources():
        source = path.read_text(encoding="utf-8")
        imports = _imports(source, _module_name(path), path.name == "__init__.py")
        violations += _violations(_top(path), _module_name(path), imports)
    assert not violations, "imports against the layering of DESIGN.md:\n" + "\n".join(violations)


def test_layer_check_catches_violations() -> None:
    # The checker itself: relative, absolute, function-level and facade imports are all resolved.
    source = (
        "from ..spectral import masses\n"      # layer 3: violation
        "from . import exact\n"                # own package
        "from koopscope import errors\n"       # layer 1
        "import numpy as np\n"
        "def f():\n"
        "    import koopscope.gate.policy\n"   # layer 6: violation
        "    from koopscope import __version__\n"  # the facade: violation
    )
    imports = _imports(source, "koopscope.dmd.probe", is_package=False)
    assert [m for _, m in imports] == [
        "koopscope.spectral", "koopscope.dmd", "koopscope.errors", "numpy",
        "koopscope.gate.policy", "koopscope.__version__",
    ]
    found = _violations("dmd", "koopscope.dmd.probe", imports)
    assert [v.split(" imports ")[1] for v in found] == [
        "koopscope.spectral (layer 3)", "koopscope.gate.policy (layer 6)",
        f"koopscope.__version__ (layer {FACADE_LAYER})",
    ]
    assert _violations("cli", "koopscope.cli.demo", [(1, "koopscope.demo"), (2, "koopscope")]) == []
    relative = _imports("from .. import dmd\n", "koopscope.cli", is_package=True)
    assert relative == [(1, "koopscope.dmd")]


def test_package_ships_py_typed() -> None:
    assert (PACKAGE_DIR / "py.typed").is_file()
    pyproject = PACKAGE_DIR.parent.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: py.typed must be package data, so wheels carry it
        assert '"py.typed"' in pyproject.read_text(encoding="utf-8")
