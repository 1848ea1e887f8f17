"""Sheets of pictures (sitegen/site/sheets.py): where pictures go, and that a sheet gives back every picture's
pixels exactly, its gutter its own edge."""

import io

import numpy as np
import pytest
from PIL import Image

from sitegen.errors import SitegenError
from sitegen.site import sheets
from sitegen.site.sheets import GUTTER, Member, Packer, compose, measurer
from sitegen.store.cache import Cache


def encoded(pixels: np.ndarray, fmt: str = "WEBP", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pictures(count: int, seed: int = 0) -> dict[Member, np.ndarray]:
    """Random pictures of many sizes, as a site has them (patches, zooms, whole pictures)."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in range(count):
        height, width = rng.integers(1, 170, size=2)
        out[Member("vis", f"key{n % 3}", f"{n}.webp")] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return out


def cells(sheet):
    return [(x - GUTTER, y - GUTTER, x + w + GUTTER, y + h + GUTTER) for x, y, w, h in sheet.rects]


def test_pictures_are_placed_apart_and_a_full_sheet_goes_on_in_another(monkeypatch):
    monkeypatch.setattr(sheets, "HEIGHT", 400)
    shown = pictures(60)
    packer = Packer(lambda kind, key, member: (*shown[Member(kind, key, member)].shape[1::-1], False))
    pics = {member: packer.add("assets/layers/conv/3", member) for member in shown}
    assert [sheet.path for sheet in packer.sheets][:3] == [
        "assets/layers/conv/3.avif", "assets/layers/conv/3~2.avif", "assets/layers/conv/3~3.avif"]
    for sheet in packer.sheets:
        assert sheet.height <= 400 and sheet.width == sheets.WIDTH
        boxes = cells(sheet)
        assert all(0 <= b[0] and 0 <= b[1] and b[2] <= sheet.width and b[3] <= sheet.height for b in boxes)
        assert all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])
    for member, pic in pics.items():
        assert (pic.width, pic.height) == shown[member].shape[1::-1]
        assert pic.sheet.members[pic.sheet.rects.index((pic.x, pic.y, pic.width, pic.height))] == member
    # the same picture again is the same place; in another sheet, a place there
    first = next(iter(shown))
    assert packer.add("assets/layers/conv/3", first) is pics[first]
    other = packer.add("assets/layers/conv/tiles", first)
    assert other.sheet.path == "assets/layers/conv/tiles.avif" and (other.x, other.y) == (GUTTER, GUTTER)


def test_a_picture_wider_than_a_sheet_widens_its_sheet():
    packer = Packer(lambda kind, key, member: (3000, 20, False))
    pic = packer.add("assets/trees/cat", Member("tree", "k", "picture.webp"))
    assert pic.sheet.width == 3000 + 2 * GUTTER and (pic.x, pic.y) == (GUTTER, GUTTER)


def test_a_sheet_gives_back_every_picture_exactly_with_its_edge_around_it(monkeypatch):
    monkeypatch.setattr(sheets, "HEIGHT", 300)
    shown = pictures(40, seed=1)
    stored = {m: encoded(p, lossless=True) if n % 2 else encoded(p, "PNG") for n, (m, p) in enumerate(shown.items())}
    packer = Packer(lambda kind, key, member: (*shown[Member(kind, key, member)].shape[1::-1], True))
    pics = [packer.add("assets/layers/fc/tiles", member) for member in shown]
    decoded = {sheet.path: np.asarray(Image.open(io.BytesIO(compose(sheet, stored.__getitem__))).convert("RGB"))
               for sheet in packer.sheets}
    assert len(decoded) > 1
    for member, pic in zip(shown, pics):
        pixels = decoded[pic.sheet.path]
        assert pixels.shape == (pic.sheet.height, pic.sheet.width, 3)
        x, y, w, h = pic.x, pic.y, pic.width, pic.height
        assert np.array_equal(pixels[y:y + h, x:x + w], shown[member])
        around = pixels[y - GUTTER:y + h + GUTTER, x - GUTTER:x + w + GUTTER]
        assert np.array_equal(around, np.pad(shown[member], ((GUTTER, GUTTER), (GUTTER, GUTTER), (0, 0)), "edge"))


def test_small_pictures_go_into_a_lossless_sheet_and_larger_ones_into_a_lossy_one():
    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:96, 0:96]  # a photo-like picture: smooth shades
    smooth = np.stack([128 + 100 * np.sin(xs / 15), 128 + 100 * np.cos(ys / 20), (xs + ys) % 256], -1).astype(np.uint8)
    fine = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)  # a small gradient picture: single pixels of colour
    shown = {Member("vis", "k", "big.webp"): smooth, Member("vis", "k", "small.webp"): fine}
    stored = {member: encoded(pixels, lossless=True, method=0) for member, pixels in shown.items()}  # as the cache
    packer = Packer(lambda kind, key, member: sheets.shape(stored[Member(kind, key, member)]))
    pics = {member: packer.add("assets/layers/conv/3", member) for member in shown}
    assert [(sheet.path, sheet.lossless) for sheet in packer.sheets] == [
        ("assets/layers/conv/3.avif", False), ("assets/layers/conv/3~lossless.webp", True)]
    # a small photo (a patch's crop) has no single pixels of colour to keep: the lossy sheet
    stored[Member("vis", "k", "crop.webp")] = stored[Member("vis", "k", "small.webp")]
    assert packer.add("assets/layers/conv/3", Member("vis", "k", "crop.webp"), photo=True).sheet is packer.sheets[0]
    for member, pixels in shown.items():
        pic = pics[member]
        data = compose(pic.sheet, stored.__getitem__)
        assert is_lossless(data) == pic.sheet.lossless and is_avif(data) != pic.sheet.lossless
        got = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[pic.y:pic.y + pic.height, pic.x:pic.x + pic.width]
        error = np.abs(got.astype(int) - pixels).mean()
        assert error == 0 if pic.sheet.lossless else 0 < error < 2, (member, error)  # measured: 0.5


def is_avif(data: bytes) -> bool:
    """Whether a file is an AVIF image: its ISO box ``ftyp`` names the brand."""
    return data[4:12] == b"ftypavif"


def is_lossless(data: bytes) -> bool:
    """Whether a file is a WebP in WebP's lossless format: its image chunk is VP8L (VP8 is lossy)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    at = 12
    while at + 8 <= len(data):  # the chunks: the image's comes after VP8X and the like
        chunk, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if chunk in (b"VP8 ", b"VP8L"):
            return chunk == b"VP8L"
        at += 8 + size + size % 2
    raise AssertionError("no image chunk")


def test_a_lossy_sheet_keeps_colour_at_full_resolution():
    """A gradient picture's single pixels of colour keep their colour in a lossy sheet: a codec that halves the
    resolution of colour (4:2:0, as lossy WebP) makes a grid of red and green pixels a grid of browns."""
    grid = np.zeros((96, 96, 3), np.uint8)
    grid[..., 0] = 60 + 140 * ((np.indices((96, 96)).sum(0) % 2) == 0)  # red on even pixels, green on odd
    grid[..., 1] = 200 - grid[..., 0] + 60
    member = Member("vis", "k", "grid.webp")
    stored = {member: encoded(grid, lossless=True)}
    packer = Packer(lambda kind, key, name: sheets.shape(stored[Member(kind, key, name)]))
    pic = packer.add("assets/layers/conv/0", member)
    assert not pic.sheet.lossless
    got = np.asarray(Image.open(io.BytesIO(compose(pic.sheet, stored.__getitem__))).convert("RGB"))
    got = got[pic.y:pic.y + pic.height, pic.x:pic.x + pic.width].astype(int)
    red_minus_green = got[..., 0] - got[..., 1]
    even = (np.indices((96, 96)).sum(0) % 2) == 0
    assert red_minus_green[even].mean() > 100 and red_minus_green[~even].mean() < -100  # given: +140 and -140
    halved = io.BytesIO()
    Image.fromarray(grid).save(halved, format="WEBP", quality=90)  # colour at half the resolution: brown
    webp = np.asarray(Image.open(halved).convert("RGB")).astype(int)
    assert abs((webp[..., 0] - webp[..., 1])[even].mean()) < 60


def test_the_lossy_sheets_quality_is_the_atlas_s():
    """[site] quality sets the lossy sheets' AVIF quality: lower, a smaller file further from the pictures."""
    rng = np.random.default_rng(5)
    noise = np.clip(128 + rng.normal(0, 40, (96, 96, 3)), 0, 255).astype(np.uint8)  # a gradient picture's texture
    member = Member("vis", "k", "noise.webp")
    stored = {member: encoded(noise, lossless=True)}
    made = {}
    for quality in (30, 90):
        packer = Packer(lambda kind, key, name: sheets.shape(stored[Member(kind, key, name)]), quality)
        pic = packer.add("assets/layers/conv/0", member)
        assert pic.sheet.encoding == {"format": "AVIF", "subsampling": "4:4:4", "speed": 6,
                                      "advanced": {"tune": "ssim"}, "quality": quality}
        data = compose(pic.sheet, stored.__getitem__)
        got = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[pic.y:pic.y + 96, pic.x:pic.x + 96]
        made[quality] = len(data), np.abs(got.astype(int) - noise).mean()
    assert made[30][0] < made[90][0] / 2 and made[30][1] > made[90][1] + 5, made


def test_a_picture_of_another_size_than_measured_is_an_error():
    packer = Packer(lambda kind, key, member: (4, 4, True))
    pic = packer.add("assets/layers/conv/0", Member("vis", "k", "0.webp"))
    with pytest.raises(ValueError, match="vis/k 0.webp is 5 x 4 px, not the 4 x 4 px it was measured"):
        compose(pic.sheet, lambda member: encoded(np.zeros((4, 5, 3), np.uint8), lossless=True))


def test_pictures_are_measured_in_the_cache_and_a_missing_one_is_named(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("vis", "k", {"0.webp": encoded(np.zeros((7, 9, 3), np.uint8), lossless=True),
                           "1.png": encoded(np.zeros((300, 200, 3), np.uint8), "PNG"), "0-scales.npy": np.zeros(2),
                           "2.webp": encoded(np.zeros((65, 4, 3), np.uint8), lossless=True),
                           "3.jpg": encoded(np.zeros((64, 64, 3), np.uint8), "JPEG")})
    measure = measurer(cache)  # (width, height, shown exactly): small pictures and optimized images (PNG)
    assert measure("vis", "k", "0.webp") == (9, 7, True) and measure("vis", "k", "1.png") == (200, 300, True)
    assert measure("vis", "k", "2.webp") == (4, 65, False) and measure("vis", "k", "3.jpg") == (64, 64, True)
    with pytest.raises(SitegenError, match="cache entry vis/k is missing or damaged .it has no 4.webp.; nothing "
                                           "was written"):
        measure("vis", "k", "4.webp")
    with pytest.raises(SitegenError, match="cache entry maps/gone is missing"):
        measure("maps", "gone", "0-map.webp")


def test_the_link_check_finds_a_picture_outside_its_sheet_or_a_sheet_of_another_size(tmp_path):
    from sitegen.check import check_site

    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "s.webp").write_bytes(encoded(np.zeros((20, 30, 3), np.uint8), lossless=True))

    def page(view: str, size: str, used: str = "sg-sheet0", before: str = "") -> list[str]:
        (tmp_path / "index.html").write_text(f'{before}<svg class="pic" viewBox="{view}" role="img" aria-label="a">'
                                             f'<use href="#{used}"/></svg><svg class="sheets"><defs><image '
                                             f'id="sg-sheet0" href="assets/s.webp" {size}/></defs></svg>')
        return check_site(tmp_path)[1]

    assert page("2 2 10 16", 'width="30" height="20"') == []
    assert page("2 2 10 19", 'width="30" height="20"') == [
        'index.html: assets/s.webp: the picture at 2 2 10 19 lies outside it']
    assert page("2 2 10 16", 'width="30" height="40"') == ["index.html: assets/s.webp is 30 x 20 px, the page says "
                                                           "30 x 40"]
    assert page("2 2 10 16", 'width="30" height="20"', used="sg-sheet1") == [
        "index.html: use[href]='#sg-sheet1': no element with id 'sg-sheet1'"]
    assert page("2 2 10 16", 'width="30" height="20"', used="notes", before='<h2 id="notes">Notes</h2>') == [
        "index.html: a picture uses #notes, which is not a sheet's image"]
    assert page("2 2 10 16", 'width="30" height="20"', before='<h2 id="sg-sheet0">A note</h2>') == [
        "index.html: the id 'sg-sheet0' is given to more than one element"]  # a browser would show the heading


def test_a_sheet_is_composed_once_and_kept_in_the_cache(tmp_path):
    from sitegen.site.sheets import made

    shown = pictures(5, seed=2)
    stored = {member: encoded(pixels, lossless=True) for member, pixels in shown.items()}
    reads = []

    def read(member):
        reads.append(member)
        return stored[member]

    def sheet():
        packer = Packer(lambda kind, key, member: (*shown[Member(kind, key, member)].shape[1::-1], True))
        for member in shown:
            packer.add("assets/layers/conv/tiles", member)
        return packer.sheets[0]

    cache = Cache(tmp_path / "cache")
    first = made(sheet(), read, cache)
    assert len(reads) == 5 and made(sheet(), read, cache) == first and len(reads) == 5
    moved = sheet()
    moved.rects[0] = (moved.rects[0][0], moved.rects[0][1] + 1, *moved.rects[0][2:])  # another place: composed anew
    made(moved, read, cache)
    assert len(reads) == 10


def test_a_pillow_that_cannot_write_a_sheets_format_is_told_so_before_anything_is_written(monkeypatch):
    from sitegen.site.sheets import Sheet, encodable

    sheet = Sheet("assets/layers/conv/0.avif")
    encodable([sheet])  # this Pillow writes AVIF
    monkeypatch.setitem(sheets.LOSSY, "advanced", {"tune": "no-such-tuning"})  # as an encoder without libaom's
    with pytest.raises(SitegenError, match=r"cannot write AVIF as sitegen does \(.*option.*\), the format of "
                                           r"assets/layers/conv/0.avif; nothing was written: pip install "
                                           r"--force-reinstall --only-binary=:all: 'pillow>=11.3' \(its wheels' AVIF "
                                           r"encoder is libaom\)"):
        encodable([sheet])
    monkeypatch.delitem(Image.SAVE, "AVIF")  # as a Pillow built without it, or that only reads it
    with pytest.raises(SitegenError, match=r"cannot write AVIF, the format of assets/layers/conv/0.avif; "
                                           r"nothing was written: pip install 'pillow>=11.3'"):
        encodable([sheet])
