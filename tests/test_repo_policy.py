"""Rules of the repository that a test can enforce."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "chapters").glob("*/*.ipynb"))


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_only_the_backend_imports_numpy_or_cupy():
    """Ops take their array module from the data (backend.array_module), so they run on NumPy and CuPy alike."""
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for path in sorted((ROOT / "minigrad").rglob("*.py")) if path.name != "backend.py"
                 for name in _imported_modules(path) if name.split(".")[0] in ("numpy", "cupy", "cupyx")]
    assert not offenders, "import NumPy/CuPy only in minigrad/backend.py:\n" + "\n".join(offenders)


def _imports_of_package(folder, forbidden):
    return [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / folder).rglob("*.py"))
            for name in _imported_modules(path) if name.split(".")[0] in forbidden]


def test_kernels_are_the_bottom_layer():
    """kernels/ works on arrays: it never imports the engine, the book's library or the reference."""
    offenders = _imports_of_package("kernels", ("minigrad", "book", "torch"))
    assert not offenders, "kernels/ is the bottom layer:\n" + "\n".join(offenders)


def test_the_engine_never_imports_the_book_or_torch():
    """minigrad/ is the engine only: what the chapters build on it lives in book/, PyTorch only in the tests' helpers."""
    offenders = _imports_of_package("minigrad", ("book", "torch"))
    assert not offenders, "minigrad/ imports only itself, kernels/ and array libraries:\n" + "\n".join(offenders)


def test_importing_the_engine_loads_no_chapter_code():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, minigrad; print(*sorted(sys.modules))"],
        capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    outside = [name for name in loaded if name.split(".")[0] in ("book", "torch")]
    assert not outside, f"`import minigrad` loaded {outside}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    dirty = [i for i, cell in enumerate(notebook["cells"])
             if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them (jupyter nbconvert --clear-output)"


def test_every_chapter_has_a_readme_and_a_notebook():
    chapters = [p for p in (ROOT / "chapters").iterdir() if p.is_dir() and p.name[:2].isdigit()]
    assert chapters, "no chapters found"
    for chapter in chapters:
        assert (chapter / "README.md").is_file(), f"{chapter.name} has no README.md"
        assert list(chapter.glob("*.ipynb")), f"{chapter.name} has no notebook"
