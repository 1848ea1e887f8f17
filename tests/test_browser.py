"""The atlas in a real browser (headless Chromium): from file:// and under a sub-path of a local server.

Every page visited must load all its images, log no console error and have no failed request.
Screenshots are kept in test-artifacts/browser/.
"""

import functools
import http.server
import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL, pictures_on, write_images
from PIL import Image
from typer.testing import CliRunner

from sitegen.cli import app

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts" / "browser"

CONFIG = """
title = "Browser test atlas"
""" + TINY_MODEL + """[layers]
use = ["features.1", "features.4", "features.7", "fc"]
[images]
featured = ["imgs/img0.png", "imgs/img1.png"]
probe = ["imgs"]
probe_flip = true
[compute]
top_k = 4
methods = ["guided", "deconv", "gradient", "optimize"]
[optimize]
layers = ["features.4", "fc"]
steps = 8
size = 32
[[credits]]
files = ["imgs/img0.png"]
license = "CC0"
source = "a_file_name_without_a_single_space_long_enough_to_push_a_page_past_a_phone_screen.jpg"
"""

WAIT_FOR_IMAGES = """async () => {
  const images = Array.from(document.images);
  images.forEach(i => { i.loading = "eager"; });
  await Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })));
  const broken = images.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  // the sheets that pictures show parts of, each loaded as the browser loads it
  const sheets = [...new Set(Array.from(document.querySelectorAll("svg.sheets image"), i => i.getAttribute("href")))];
  const failed = await Promise.all(sheets.map(href => new Promise(r => {
    const sheet = new Image();
    sheet.onload = () => r(sheet.naturalWidth > 0 ? null : href);
    sheet.onerror = () => r(href);
    sheet.src = href;
  })));
  return broken.concat(failed.filter(Boolean));
}"""


# a collaborator's note that tries to run script four ways
HOSTILE = """# Hostile note

Fur <b id="hover" onmouseover="alert('hover')">here</b><script>alert('script')</script>
[a link](javascript:alert('link')) <iframe srcdoc="<script>parent.alert('frame')</script>"></iframe>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    write_images(root / "imgs", 4)
    (root / "atlas.toml").write_text(CONFIG)
    (root / "neurons" / "features.4").mkdir(parents=True)
    (root / "neurons" / "features.4" / "1.md").write_text(HOSTILE)
    (root / "hostile.md").write_text(HOSTILE)
    result = CliRunner().invoke(app, ["build", "-c", str(root / "atlas.toml"), "-o", str(root / "www" / "atlas"),
                                      "--cache", str(root / "cache"), "-q"])
    assert result.exit_code == 0, result.output
    return root / "www"


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/atlas/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


class Visit:
    """One browser tab that checks every page it lands on."""

    def __init__(self, browser, name):
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.name = name
        self.problems = []
        self.page.on("console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.shots = 0

    def check(self):
        self.page.wait_for_load_state("load")
        broken = self.page.evaluate(WAIT_FOR_IMAGES)
        assert broken == [], f"{self.page.url}: images did not load: {broken}"
        assert self.problems == [], self.problems
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{self.shots:02d}.png"), full_page=False)

    def click(self, selector):
        self.page.click(selector)
        self.check()


@pytest.mark.parametrize("where", ["file", "http"])
def test_walk_the_atlas(browser, site, server, where):
    base = (site / "atlas").as_uri() + "/" if where == "file" else server
    visit = Visit(browser, where)
    visit.page.goto(base + "index.html")
    visit.check()
    assert visit.page.title().startswith("Browser test atlas")

    visit.click("header nav a:text-is('features.4')")  # a layer
    assert visit.page.url.endswith("layers/features.4.html")
    visit.click("#tiles li:first-child a")  # a neuron
    assert visit.page.url.endswith("layers/features.4/0.html")
    visit.page.keyboard.press("k")  # next neuron
    visit.page.wait_for_url("**/layers/features.4/1.html")
    visit.check()

    visit.page.keyboard.press("c")  # down a layer: the strongest child
    visit.page.wait_for_url("**/layers/features.1/*.html")
    visit.check()
    visit.page.keyboard.press("p")  # up a layer: the strongest parent
    visit.page.wait_for_url("**/layers/features.4/*.html")
    visit.check()

    visit.click("#edges-dataset ~ .edges .relatives:first-child ul.rel a >> nth=0")  # a child
    assert "/layers/features.1/" in visit.page.url
    visit.click("#edges-dataset ~ .edges .relatives ul.rel a >> nth=0")  # one of its parents
    assert "/layers/features.4/" in visit.page.url

    visit.page.goto(base + "images/img0.html")  # an image tree, down to the first layer
    visit.check()
    assert visit.page.locator("ul.tree .node").count() > 4  # the class, then its parts
    assert visit.page.locator("p.rests a").count() >= 1  # what the class rests on, in one line
    assert not visit.page.locator("ul.tree ul ul .node").first.is_visible()  # deeper nodes start folded
    visit.page.locator("ul.tree ul details > summary").first.focus()
    visit.page.keyboard.press("Enter")  # opens the first part's parts
    visit.click("ul.tree ul ul .node a >> nth=0")  # the strongest channel of a part
    assert "/layers/features.4/" in visit.page.url

    visit.page.goto(base + "index.html")
    visit.page.keyboard.press("/")
    visit.page.keyboard.type("features.7/2")
    visit.page.keyboard.press("Enter")  # the header's form opens the search page
    visit.page.wait_for_url("**/search.html?q=*")
    visit.check()
    first = visit.page.locator("#search-results a").first
    assert first.text_content().startswith("features.7/2")
    visit.page.locator("#search-q").press("Enter")
    visit.page.wait_for_url("**/layers/features.7/2.html")
    visit.check()


def test_notes_cannot_run_script(browser, site):
    """Sanitised by default; with [site] raw_html = true the pages' Content-Security-Policy still stops inline
    script, handlers, javascript: links and script in frames."""
    root = site.parent
    (root / "atlas-raw.toml").write_text(CONFIG + "[site]\nraw_html = true\n")
    result = CliRunner().invoke(app, ["build", "-c", str(root / "atlas-raw.toml"), "-o", str(root / "raw"),
                                      "--cache", str(root / "cache"), "-q"])
    assert result.exit_code == 0, result.output
    dialogs = []
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for folder, raw in ((site / "atlas", False), (root / "raw", True)):
        for path in ("layers/features.4/1.html", "pages/hostile.html"):
            page.goto((folder / path).as_uri())
            assert page.locator("h1").first.inner_text() == "Hostile note" or "Hostile note" in page.content()
            page.hover("#hover")
            page.click("text=a link")
            assert ("alert('script')" in page.content()) == raw
    page.close()
    assert dialogs == []


def test_pages_read_without_javascript(browser, site):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto((site / "atlas" / "layers" / "features.4.html").as_uri())
    assert page.locator("#tiles li").count() == 8
    page.goto((site / "atlas" / "images" / "img0.html").as_uri())
    assert page.locator("ul.tree details[open]").count() >= 1  # the tree is plain HTML
    context.close()


A11Y = """() => {
  const problems = [];
  const where = e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "");
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  let level = 1;
  for (const h of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    const next = Number(h.tagName[1]);
    if (next > level + 1) problems.push(`heading level skipped: ${h.tagName} "${h.textContent.trim()}"`);
    level = next;
  }
  for (const img of document.images) {
    if (!(img.getAttribute("alt") || "").trim()) problems.push("image without alt text: " + img.getAttribute("src"));
  }
  for (const svg of document.querySelectorAll("svg.pic")) {
    if (svg.getAttribute("role") !== "img" || !(svg.getAttribute("aria-label") || "").trim())
      problems.push("picture without alt text: " + svg.getAttribute("viewBox"));
  }
  for (const input of document.querySelectorAll("input, select, textarea")) {
    const labelled = input.getAttribute("aria-label")
      || (input.id && document.querySelector(`label[for="${input.id}"]`));
    if (!labelled) problems.push("form field without a label: " + where(input));
  }
  for (const a of document.querySelectorAll("a[href]")) {
    const text = a.textContent.trim() || Array.from(a.querySelectorAll("img")).map(i => i.alt).join("").trim()
      || Array.from(a.querySelectorAll("svg.pic")).map(i => i.getAttribute("aria-label")).join("").trim()
      || a.getAttribute("aria-label");
    if (!text) problems.push("link without text: " + a.getAttribute("href"));
  }
  // WCAG 2 contrast: 4.5:1 for text, 3:1 for large text, against the first opaque background behind it
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = e => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c;
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const e = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(e) || !e.getClientRects().length) continue;
    seen.add(e);
    const style = getComputedStyle(e);
    if (style.visibility === "hidden" || e.closest("svg, .sr, [hidden]")) continue;
    const [l1, l2] = [lum(rgb(style.color)), lum(background(e))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const text = e.textContent.trim().slice(0, 30);
    if (ratio < needed) problems.push(`contrast ${ratio.toFixed(2)} < ${needed}: ${where(e)} "${text}"`);
  }
  return problems;
}"""


@pytest.mark.parametrize("width", [1200, 375])
def test_pages_pass_a_basic_accessibility_check(browser, site, width):
    """Alt texts, labels, headings, link texts and WCAG contrast on every kind of page; on a phone-sized
    screen nothing is wider than the screen (wide tables scroll inside themselves)."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    root = site / "atlas"
    for path in ["index.html", "layers/features.4.html", "layers/features.4/1.html", "layers/fc/0.html",
                 "images/img0.html", "about.html", "search.html"]:
        page.goto((root / path).as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate(A11Y) == [], path
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than a {width} px screen"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"a11y-{width}-{path.replace('/', '-')}.png"), full_page=True)
    page.close()


def test_a_phone_sees_every_picture_and_the_header_scrolls_away(browser, site):
    """At 375 px: the featured pictures fit the screen (two to a row, none hidden behind a scroll), and the
    header does not stay on top of the page."""
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto((site / "atlas" / "layers" / "features.4" / "1.html").as_uri())
    page.wait_for_load_state("load")
    outside = page.evaluate("""() => Array.from(document.querySelectorAll('table.vis img, table.vis .pic'))
        .filter(i => { const r = i.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
        .map(i => i.alt || i.getAttribute("aria-label"))""")
    assert outside == [], outside
    assert page.evaluate("(() => { const t = document.querySelector('table.vis'); "
                         "return t.scrollWidth <= t.clientWidth + 1; })()")
    page.evaluate("window.scrollTo(0, 600)")
    bottom = page.evaluate("document.querySelector('header.top').getBoundingClientRect().bottom")
    assert bottom <= 0, "the header stays on screen"
    page.goto((site / "atlas" / "index.html").as_uri())
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    page.close()


def enlarged(sheet: Image.Image, rect: tuple[int, int, int, int]) -> np.ndarray:
    """A rectangle of a sheet enlarged to 160 px as a browser draws a gradient picture (pixel for pixel)."""
    x, y, w, h = rect
    return np.asarray(sheet.crop((x, y, x + w, y + h)).resize((160, 160), Image.Resampling.NEAREST), dtype=float)


def off(on_screen: np.ndarray, expected: np.ndarray) -> float:
    """How far a 160 px picture on screen is from ``expected`` (the mean difference of its levels); the picture
    may start between two screen pixels, its screenshot then 161 px, so the best of its 160 px windows."""
    return min(np.abs(on_screen[dy:dy + 160, dx:dx + 160] - expected).mean()
               for dy in range(on_screen.shape[0] - 159) for dx in range(on_screen.shape[1] - 159))


@pytest.mark.parametrize("width", [1280, 375])
def test_a_packed_picture_shows_its_own_pixels(browser, site, width):
    """From file://, a picture of a sheet is drawn from its own rectangle of the sheet: each guided-backprop
    picture of a neuron page on screen is its rectangle of the sheet enlarged, pixel for pixel, and unlike the
    rectangle one pixel over."""
    page = browser.new_page(viewport={"width": width, "height": 800}, device_scale_factor=1)
    root = site / "atlas"
    page.goto((root / "layers" / "features.4" / "1.html").as_uri())
    assert page.evaluate(WAIT_FOR_IMAGES) == []
    shown = {alt: (sheet, rect) for sheet, rect, alt in pictures_on(root, "layers/features.4/1.html")}
    for image in ("img0", "img1"):
        alt = f"Guided backprop of features.4/1 on imgs/{image}.png"
        sheet, (x, y, w, h) = shown[alt]
        drawn = page.get_by_role("img", name=alt, exact=True)
        drawn.scroll_into_view_if_needed()
        box = drawn.bounding_box()
        assert box and box["width"] == 160 and box["height"] == 160 and box["x"] >= 0 and box["x"] + 160 <= width
        on_screen = np.asarray(Image.open(io.BytesIO(drawn.screenshot())).convert("RGB"), dtype=float)
        pixels = Image.open(root / sheet).convert("RGB")
        own, over = off(on_screen, enlarged(pixels, (x, y, w, h))), off(on_screen, enlarged(pixels, (x + 1, y, w, h)))
        assert own < 1 and over > own + 1, (image, own, over)  # measured: 0 and 1.3 or more
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drawn.screenshot(path=str(ARTIFACTS / f"packed-{width}-{image}.png"))
    page.close()


def test_a_long_part_of_what_a_class_rests_on_wraps_on_a_phone(browser, site):
    """On a phone, each part that a class rests on is a line of its own, and a long one wraps within the screen
    (a part that kept to one line made an image page of the default atlas 547 px wide)."""
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto((site / "atlas" / "images" / "img0.html").as_uri())
    assert page.evaluate("document.querySelectorAll('.rests .part').length") > 0
    page.evaluate("document.querySelector('.rests .part a').append(', centred 57% across and 42% down, and a few "
                  "more words than any part needs (32%, 57 channels)')")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    page.close()
