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


def test_class_pages_of_unsafe_names_do_not_collide():
    from sitegen.site.links import class_url

    assert class_url("dog") == "classes/dog.html"
    names = ["狗", "猫", "a b", "a_b", "a/b"]
    urls = [class_url(name) for name in names]
    assert len(set(urls)) == len(names)
    assert all(url.startswith("classes/") and url.count("/") == 1 for url in urls)
