"""The book runner on two tiny notebooks: offline pages, titles from headings, links, MathJax, clean outputs."""
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from book.runner import MATHJAX_JS, build

CELL = """import sys
from book.training import _Progress
bar = _Progress(3, 0, enabled=True)   # the training loop's bar: off under the runner
bar.update(loss="1.0"); bar.close()
print("to stdout")
print("to stderr", file=sys.stderr)"""


class Tags(HTMLParser):
    """Every start tag of a page as (tag, attributes), and the page's <title>."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.title, self._in_title = [], "", False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def remote(url):
    return url.strip().lower().startswith(("http:", "https:", "//"))


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Build a chapter of two notebooks; returns (output folder, pages)."""
    root = tmp_path_factory.mktemp("chapters")
    chapter = root / "00_tiny"
    chapter.mkdir()
    (chapter / "README.md").write_text("# Chapter 00 · Tiny\n")
    for name, heading in (("01_first", "Squares"), ("02_second", "Cubes")):
        cells = [new_markdown_cell(f"# {heading}\n\nThe square is $x^2$."), new_code_cell(CELL)]
        nbformat.write(new_notebook(cells=cells), chapter / f"{name}.ipynb")
    out = root / "book"
    pages = build([("00_tiny", path) for path in sorted(chapter.glob("*.ipynb"))], out, fast=True, cell_timeout=60)
    return out, pages


def test_the_notebooks_ran(book):
    _, pages = book
    assert [page.error for page in pages] == [None, None]


def test_no_page_loads_a_remote_resource(book):
    out, _ = book
    files = sorted(out.rglob("*.html"))
    assert len(files) == 3
    for path in files:
        text = path.read_text()
        urls = [attrs.get(key) or "" for tag, attrs in Tags(text).tags if tag in ("script", "link", "img", "iframe")
                for key in ("src", "href")]
        assert not [url for url in urls if remote(url)], f"{path.name} loads {[u for u in urls if remote(u)]}"
        assert "cdnjs" not in text and "import(\"http" not in text and "url(http" not in text, path.name


def test_titles_come_from_the_headings(book):
    out, _ = book
    assert Tags((out / "00_tiny/01_first.html").read_text()).title == "Squares"
    assert Tags((out / "00_tiny/02_second.html").read_text()).title == "Cubes"
    index = (out / "index.html").read_text()
    for title in ("Chapter 00 · Tiny", "Squares", "Cubes", "passed"):
        assert title in index


def links(path):
    """{rel or text: href} of the page's <a> tags that lead to other files."""
    return {attrs.get("rel", attrs["href"]): attrs["href"] for tag, attrs in Tags(path.read_text()).tags
            if tag == "a" and not attrs.get("href", "#").startswith("#")}


def test_pages_link_to_the_index_and_their_neighbours(book):
    out, _ = book
    first, second = out / "00_tiny/01_first.html", out / "00_tiny/02_second.html"
    assert (first.parent / links(first)["next"]).resolve() == second
    assert (second.parent / links(second)["prev"]).resolve() == first
    for page in (first, second):
        assert (page.parent / links(page)["../index.html"]).resolve() == out / "index.html"
    index_links = set(links(out / "index.html").values())
    assert {(out / href).resolve() for href in index_links} == {first, second}


def test_math_is_typeset_by_the_local_mathjax(book):
    out, _ = book
    page = out / "00_tiny/01_first.html"
    scripts = [attrs["src"] for tag, attrs in Tags(page.read_text()).tags if tag == "script" and "src" in attrs]
    assert scripts == [f"../{MATHJAX_JS}"]
    mathjax = (page.parent / scripts[0]).resolve()
    assert b"MathJax.version" in mathjax.read_bytes()
    assert "$x^2$" in page.read_text()          # left for MathJax, which reads the $...$ delimiters


def test_outputs_hold_what_the_cells_wrote_and_nothing_else(book):
    out, _ = book
    text = (out / "00_tiny/01_first.html").read_text()
    assert "to stdout" in text and "to stderr" in text
    stderr_boxes = text.count('data-mime-type="application/vnd.jupyter.stderr"')
    assert stderr_boxes == 1, "only the cell's own stderr write: no progress bar, no warning"


def test_the_kernel_does_not_warn_about_plain_tcp(tmp_path, capfd):
    path = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Plain")]), path)
    build([("00_plain", path)], tmp_path / "book", fast=True)
    assert "without encryption" not in capfd.readouterr().err
