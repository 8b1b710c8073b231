"""Every chapter notebook runs top to bottom, headless, in fast mode (MINIGRAD_FAST=1)."""
import pytest

from book.runner import chapter_notebooks, execute_notebook

NOTEBOOKS = chapter_notebooks()
CELL_TIMEOUT = 60  # seconds: fast mode is meant to take seconds per notebook


@pytest.mark.notebook
@pytest.mark.parametrize("chapter, path", NOTEBOOKS, ids=[f"{c}/{p.name}" for c, p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(chapter, path):
    _, seconds, error = execute_notebook(path, fast=True, cell_timeout=CELL_TIMEOUT)
    print(f"{chapter}/{path.name}: {seconds:.1f} s")
    assert error is None, f"{chapter}/{path.name} failed after {seconds:.1f} s:\n{error}"
