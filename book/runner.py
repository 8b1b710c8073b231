"""The book runner: execute chapter notebooks headless and render them to HTML.

    python -m book              # every chapter, full mode -> build/book/index.html
    python -m book 00 03 --fast # chosen chapters, small sizes (what the tests run)

Notebooks read the mode with `fast_mode()` in their first cell: fast mode shrinks sizes so a chapter
runs in seconds; full mode reproduces the chapter's numbers. The pages work offline: figures are embedded,
MathJax is copied beside them, and each page links to the index and to the previous and next notebook.
"""
import argparse
import html
import os
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = REPO_ROOT / "chapters"
FAST_VARIABLE = "MINIGRAD_FAST"
RUNNER_VARIABLE = "BOOK_RUNNER"


def fast_mode() -> bool:
    """True when the notebook should run at small sizes (MINIGRAD_FAST=1, set by the tests and --fast)."""
    return os.environ.get(FAST_VARIABLE, "0").strip().lower() in ("1", "true", "yes")


def under_runner() -> bool:
    """True in a kernel the book runner started (BOOK_RUNNER=1): its outputs become a static page."""
    return os.environ.get(RUNNER_VARIABLE) == "1"


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

    The kernel gets MINIGRAD_FAST, BOOK_RUNNER=1 and, unless you set it, OPENBLAS_NUM_THREADS=1: the book's matrices
    are small, and NumPy's BLAS threads then only spin (on a busy 2-core machine a notebook ran 4x slower with them).
    The kernel manager hands the kernel CurveZMQ keys (ipykernel's kernelspec supports them): its sockets are then
    encrypted, and the kernel does not warn that it runs over plain TCP.
    Returns (executed notebook, seconds, error message or None)."""
    import nbclient
    import nbformat
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, FAST_VARIABLE: "1" if fast else "0", RUNNER_VARIABLE: "1",
           BLAS_THREADS: os.environ.get(BLAS_THREADS, "1")}
    start, error = time.perf_counter(), None
    try:
        client = nbclient.NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(path.parent)}},
                                         config=Config(KernelManager={"transport_encryption": "auto"}))
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as err:
        error = str(err)
    except nbclient.exceptions.CellTimeoutError as err:
        error = f"a cell ran longer than {cell_timeout} s: {err}"
    return nb, time.perf_counter() - start, error


# ---- the pages ----------------------------------------------------------------------------------------------------

MATHJAX_JS = "static/mathjax/tex-svg-full.js"  # in the output folder: MathJax 3 with every TeX extension, SVG output
                                               # (no font files), from the django-static-mathjax package

# nbconvert's JupyterLab page, without require.js and Mermaid (both loaded from a CDN, neither needed here), with
# the local MathJax 3 (configured as nbconvert configures MathJax 2) and the book's links above and below.
PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block html_head_js_mathjax %}
<script>
window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
                        processEscapes: true, processEnvironments: true, tags: 'ams'}};
</script>
<script defer src="{{ resources.mathjax_url }}"></script>
<style>.book-nav { display: flex; gap: 2em; padding: 1em 0; font-family: var(--jp-ui-font-family); }</style>
{% endblock %}
{% block body_header %}{{ super() }}<header>{{ resources.book_nav }}</header>{% endblock %}
{% block body_footer %}<footer>{{ resources.book_nav }}</footer>{{ super() }}{% endblock %}
"""


@dataclass
class Page:
    """A notebook and its page; href is relative to the output folder (chapter/notebook.html)."""
    chapter: str
    notebook: Path
    title: str
    href: str
    seconds: float = 0.0
    error: str = None


def first_heading(markdown: str, default: str) -> str:
    """The text of the first `# ` heading in `markdown`, else `default`."""
    return next((line[2:].strip() for line in markdown.splitlines() if line.startswith("# ")), default)


def notebook_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return first_heading("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"), path.stem)


def chapter_title(folder: Path) -> str:
    readme = folder / "README.md"
    return first_heading(readme.read_text(encoding="utf-8") if readme.is_file() else "", folder.name)


def navigation(pages, i) -> str:
    """Links from page i (one folder below the index) to the index and to the previous and next page."""
    def link(page, rel, text):
        return f'<a rel="{rel}" href="../{html.escape(page.href)}">{html.escape(text)}</a>'
    links = ['<a href="../index.html">Contents</a>']
    if i > 0:
        links.append(link(pages[i - 1], "prev", f"← {pages[i - 1].title}"))
    if i + 1 < len(pages):
        links.append(link(pages[i + 1], "next", f"{pages[i + 1].title} →"))
    return f'<nav class="book-nav">{"".join(links)}</nav>'


def render_html(nb, title: str, nav: str, target: Path):
    """Write the executed notebook as a page titled `title`, with the links `nav` above and below."""
    import jinja2
    import nbconvert

    exporter = nbconvert.HTMLExporter(extra_loaders=[jinja2.DictLoader({"book_page.html.j2": PAGE_TEMPLATE})],
                                      template_file="book_page.html.j2", mathjax_url=f"../{MATHJAX_JS}")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}, "book_nav": nav})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")


def copy_mathjax(out: Path):
    source = resources.files("mathjax") / "static" / "mathjax"
    target = out / MATHJAX_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((source / "es5" / target.name).read_bytes())
    (target.parent / "LICENSE").write_bytes((source / "LICENSE").read_bytes())


def write_index(pages, out: Path, fast: bool):
    """The contents: each chapter's title, then its notebooks' titles, times and results."""
    sections = []
    for chapter in dict.fromkeys(page.chapter for page in pages):
        group = [page for page in pages if page.chapter == chapter]
        rows = "\n".join(
            f'<tr><td><a href="{html.escape(p.href)}">{html.escape(p.title)}</a></td><td>{p.seconds:.1f} s</td>'
            f'<td>{"passed" if p.error is None else "<strong>FAILED</strong>"}</td></tr>' for p in group)
        sections.append(f"<h2>{html.escape(chapter_title(group[0].notebook.parent))}</h2>\n"
                        f"<table><tr><th>notebook</th><th>time</th><th>result</th></tr>\n{rows}\n</table>")
    failed = sum(page.error is not None for page in pages)
    (out / "index.html").write_text(
        "<!doctype html>\n<html lang='en'><meta charset='utf-8'><title>The book</title>\n"
        "<style>body { font-family: sans-serif; max-width: 60em; margin: 2em auto; }\n"
        "td, th { padding: 0.2em 1em; text-align: left; }</style>\n"
        f"<h1>The book</h1>\n<p>{'fast' if fast else 'full'} mode: {len(pages) - failed} passed, {failed} failed</p>\n"
        + "\n".join(sections) + "\n", encoding="utf-8")


def build(notebooks, out: Path, fast: bool, cell_timeout: int = 900):
    """Execute [(chapter, notebook path)] in order and write their pages, the index and MathJax to `out`."""
    pages = [Page(chapter, path, notebook_title(path), f"{chapter}/{path.stem}.html") for chapter, path in notebooks]
    copy_mathjax(out)
    width = max(len(f"{chapter}/{path.name}") for chapter, path in notebooks)
    print(f"{'notebook':<{width}} {'time':>8}  result")
    for i, page in enumerate(pages):
        nb, page.seconds, page.error = execute_notebook(page.notebook, fast, cell_timeout)
        render_html(nb, page.title, navigation(pages, i), out / page.href)
        name = f"{page.chapter}/{page.notebook.name}"
        print(f"{name:<{width}} {page.seconds:7.1f}s  {'passed' if page.error is None else 'FAILED'}", flush=True)
        if page.error:
            print("    " + page.error.strip().splitlines()[-1], file=sys.stderr)
    write_index(pages, out, fast)
    return pages


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
    pages = build(notebooks, args.out, args.fast, args.cell_timeout)
    failed = sum(page.error is not None for page in pages)
    print(f"{len(pages) - failed} passed, {failed} failed; open {args.out / 'index.html'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
