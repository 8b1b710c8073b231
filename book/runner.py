"""The book runner: execute chapter notebooks headless and render them to HTML.

    python -m book              # every chapter, full mode -> build/book/index.html
    python -m book 00 03 --fast # chosen chapters, small sizes (what the tests run)

Notebooks read the mode with `fast_mode()` in their first cell: fast mode shrinks sizes so a chapter
runs in seconds; full mode reproduces the chapter's numbers. Figures are embedded in the HTML pages.
"""
import argparse
import html
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = REPO_ROOT / "chapters"
FAST_VARIABLE = "MINIGRAD_FAST"


def fast_mode() -> bool:
    """True when the notebook should run at small sizes (MINIGRAD_FAST=1, set by the tests and --fast)."""
    return os.environ.get(FAST_VARIABLE, "0").strip().lower() in ("1", "true", "yes")


def chapter_notebooks(selected=()):
    """[(chapter folder name, notebook path)] in book order; `selected` holds numbers ('00') or names."""
    found = []
    for folder in sorted(p for p in CHAPTERS.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        if selected and not any(folder.name == s or folder.name.startswith(f"{s}_") for s in selected):
            continue
        found += [(folder.name, nb) for nb in sorted(folder.glob("*.ipynb"))]
    return found


BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def execute_notebook(path: Path, fast: bool, cell_timeout: int = 600):
    """Run a notebook top to bottom in a fresh kernel started in its own folder.

    The kernel gets MINIGRAD_FAST and, unless you set it, OPENBLAS_NUM_THREADS=1: the book's matrices are
    small, and NumPy's BLAS threads then only spin (on a busy 2-core machine a notebook ran 4x slower with them).
    Returns (executed notebook, seconds, error message or None)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, FAST_VARIABLE: "1" if fast else "0", BLAS_THREADS: os.environ.get(BLAS_THREADS, "1")}
    start, error = time.perf_counter(), None
    try:
        client = nbclient.NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(path.parent)}})
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:
        error = str(err)
    except nbclient.exceptions.CellTimeoutError as err:
        error = f"a cell ran longer than {cell_timeout} s: {err}"
    return nb, time.perf_counter() - start, error


def render_html(nb, target: Path):
    import nbconvert

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")


def write_index(rows, out: Path, fast: bool):
    items = "\n".join(
        f'<tr><td><a href="{html.escape(page)}">{html.escape(name)}</a></td><td>{seconds:.1f} s</td>'
        f'<td>{"passed" if ok else "FAILED"}</td></tr>' for name, page, seconds, ok in rows)
    mode = "fast mode" if fast else "full mode"
    out.write_text(f"<!doctype html><meta charset='utf-8'><title>The book</title>\n<h1>The book ({mode})</h1>\n"
                   f"<table><tr><th>chapter</th><th>time</th><th>result</th></tr>\n{items}\n</table>\n",
                   encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Execute chapter notebooks headless and render build/book/.")
    parser.add_argument("chapters", nargs="*", help="chapter numbers or folder names (default: all)")
    parser.add_argument("--fast", action="store_true", help="small sizes (seconds per chapter)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "book")
    parser.add_argument("--cell-timeout", type=int, default=900)
    args = parser.parse_args(argv)

    notebooks = chapter_notebooks(args.chapters)
    if not notebooks:
        print(f"no chapter notebooks match {args.chapters or 'chapters/'}", file=sys.stderr)
        return 2
    rows = []
    print(f"{'chapter':<44} {'time':>8}  result")
    for chapter, path in notebooks:
        nb, seconds, error = execute_notebook(path, args.fast, args.cell_timeout)
        page = f"{chapter}/{path.stem}.html"
        render_html(nb, args.out / page)
        name = f"{chapter}/{path.name}"
        rows.append((name, page, seconds, error is None))
        print(f"{name:<44} {seconds:7.1f}s  {'passed' if error is None else 'FAILED'}", flush=True)
        if error:
            print("    " + error.strip().splitlines()[-1], file=sys.stderr)
    write_index(rows, args.out / "index.html", args.fast)
    failed = sum(not ok for *_, ok in rows)
    print(f"{len(rows) - failed} passed, {failed} failed; open {args.out / 'index.html'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
