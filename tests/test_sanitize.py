"""Notes from collaborators cannot run script: Markdown's HTML is cut to a safe subset."""

import html

from sitegen.site.content import render_markdown
from sitegen.site.sanitize import sanitize

HOSTILE = """# A note

Fires on <b>fur</b>.<script>alert(1)</script> <iframe srcdoc="<script>alert(2)</script>"></iframe>

<div onmouseover="alert(3)" class="x">hover</div> <img src="x.png" onerror="alert(4)" alt="fur">
[click](javascript:alert(5)) [also](JaVa&#x09;Script:alert(6)) <a href=" javascript:alert(7)">spaced</a>
<svg><script>alert(8)</script></svg> <style>body{display:none}</style> <!-- <script>alert(9)</script> -->
<img src="data:text/html,<script>alert(10)</script>"> <a href="vbscript:x">vb</a>
<object data="x.swf"></object><embed src="x.swf"><form action="https://evil"><input></form>
"""


def test_hostile_markup_keeps_its_text_and_loses_everything_that_runs():
    out = render_markdown(HOSTILE)
    for bad in ("<script", "alert(", "<iframe", "onmouseover", "onerror", "javascript", "JaVa", "<svg", "<style",
                "data:", "vbscript", "<object", "<embed", "<form", "<input", "<!--"):
        assert bad not in out, bad
    assert "Fires on <b>fur</b>." in out and '<div class="x">hover</div>' in out
    assert '<img src="x.png" alt="fur">' in out and "<a>click</a>" in out and "<a>spaced</a>" in out


def test_what_markdown_writes_is_kept():
    text = """## Heading

*em* **strong** `code` ~~x~~ [site](https://example.org/a?b=1&c=2 "t") [rel](../layers/fc.html#n-3) <mailto:a@b.org>

| left | right |
|:-----|------:|
| 1    | 2     |

1. one
2. two

> quote

    block

Term
:   definition

Text[^1].

[^1]: A footnote.
"""
    out = render_markdown(text)
    # nothing Markdown itself writes is removed (its mailto: link's entities come back as characters)
    assert html.unescape(out) == html.unescape(render_markdown(text, raw_html=True))
    assert '<td align="right">2</td>' in out or '<td style="text-align: right;">2</td>' in out


def test_entities_and_unclosed_tags_stay_text():
    assert sanitize("<p>a &lt;script&gt; b &amp; c") == "<p>a &lt;script&gt; b &amp; c</p>"
    assert sanitize('<a href="https://x.org/?a=1&amp;b=&quot;2&quot;">x</a>') == \
        '<a href="https://x.org/?a=1&amp;b=&quot;2&quot;">x</a>'
    assert sanitize("<em>a<strong>b</em>c</strong>") == "<em>a<strong>b</strong></em>c"
    assert sanitize("<script>never<script>nested</script>ends") == "ends"  # as a browser reads it


def test_raw_html_keeps_everything():
    assert "<script>alert(1)</script>" in render_markdown("x <script>alert(1)</script>", raw_html=True)
