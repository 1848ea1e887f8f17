from sitegen.render import relative_url


def test_links_are_relative_to_the_page():
    assert relative_url("index.html", "index.html") == "index.html"
    assert relative_url("index.html", "layers/conv1.html") == "../index.html"
    assert relative_url("index.html", "layers/conv1/3.html") == "../../index.html"
    assert relative_url("layers/conv1/4.html", "layers/conv1/3.html") == "4.html"
    target = "assets/vis/conv1/3/a-guided.png"
    assert relative_url(target, "layers/conv1/3.html") == "../../" + target
    assert relative_url("images/cat.html", "layers/conv1.html") == "../images/cat.html"


def test_fragments_and_external_links():
    assert relative_url("layers/conv1/3.html#top", "index.html") == "layers/conv1/3.html#top"
    assert relative_url("#top", "layers/conv1/3.html") == "#top"
    assert relative_url("https://example.org/x", "layers/a.html") == "https://example.org/x"
