"""The shape of the code: small modules, classes and functions, and a site half that never needs torch."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "sitegen"
MODULES = sorted(PACKAGE.rglob("*.py"))
# The half after the cache: it renders from the manifest, and must not wait on a model.
SITE_HALF = ["site", "store", "stats", "render.py", "check.py", "config.py", "methods.py", "images.py", "errors.py"]


def imports(path: Path) -> set[str]:
    """The modules ``path`` imports, absolute (relative imports resolved within the package)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sizes(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 450, "a module of over 450 lines"
    for node in ast.walk(ast.parse(text)):
        length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.ClassDef):
            assert length <= 250, f"class {node.name} has {length} lines"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert length <= 80, f"function {node.name} has {length} lines"


def test_the_site_half_imports_no_torch_and_nothing_of_the_build_half():
    checked = 0
    for entry in SITE_HALF:
        for path in sorted((PACKAGE / entry).rglob("*.py")) if (PACKAGE / entry).is_dir() else [PACKAGE / entry]:
            checked += 1
            for name in imports(path):
                assert not name.startswith(("torch", "sitegen.pipeline", "sitegen.engine", "sitegen.model",
                                            "sitegen.api")), f"{path.relative_to(PACKAGE)} imports {name}"
    assert checked > 20
