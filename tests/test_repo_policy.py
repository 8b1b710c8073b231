"""Rules of the repository that a test can enforce."""
import ast
import json
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


def test_kernels_never_import_minigrad():
    offenders = [f"{path.relative_to(ROOT)} imports {name}" for path in sorted((ROOT / "kernels").rglob("*.py"))
                 for name in _imported_modules(path) if name.split(".")[0] == "minigrad"]
    assert not offenders, "kernels/ is the bottom layer:\n" + "\n".join(offenders)


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
