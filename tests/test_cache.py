import multiprocessing
import os

import numpy as np
import pytest

from sitegen.store.cache import COMPUTE_VERSION, Cache, is_cache, make_key


def test_keys_hash_exactly_their_parts():
    a = make_key("acts", "model:abc", {"crop": 224}, "layer", "digest")
    assert a == make_key("acts", "model:abc", {"crop": 224}, "layer", "digest")
    assert a != make_key("acts", "model:abd", {"crop": 224}, "layer", "digest")
    assert a != make_key("acts", "model:abc", {"crop": 225}, "layer", "digest")
    assert a != make_key("acts", "model:abc", {"crop": 224}, "layer2", "digest")
    assert len(a) == 40


def test_put_get_roundtrip_and_atomicity(tmp_path):
    cache = Cache(tmp_path)
    key = make_key("x")
    assert cache.get("acts", key) is None
    cache.put("acts", key, {"v.npy": np.arange(5, dtype=np.float32), "p.png": b"\x89PNG"})
    entry = cache.get("acts", key)
    assert entry["v.npy"].tolist() == [0, 1, 2, 3, 4]
    assert entry["p.png"] == b"\x89PNG"
    assert not list(tmp_path.rglob(".tmp-*"))


def test_damaged_entry_reads_as_a_miss(tmp_path):
    cache = Cache(tmp_path)
    key = make_key("y")
    cache.put("vis", key, {"0.png": b"a" * 1000})
    path = cache.path("vis", key)
    data = bytearray(path.read_bytes())
    data[60:70] = b"xxxxxxxxxx"  # inside the stored member: the CRC no longer matches
    path.write_bytes(bytes(data))
    assert cache.get("vis", key) is None
    assert len(cache.warnings) == 1 and "damaged" in cache.warnings[0] and not path.exists()
    path.write_bytes(b"")
    assert cache.get("vis", key) is None


def test_any_flipped_byte_reads_as_a_miss_never_an_error(tmp_path):
    """Compressed arrays fail in zlib, stored members on their CRC, headers in zipfile: none raises.  (A byte
    of the central directory can hide members: a read then lacks them, and the stages compute them again.)"""
    cache = Cache(tmp_path)
    key = make_key("z")
    members = {"mean.npy": np.random.default_rng(0).random(50), "counts.npy": np.arange(100), "0.png": b"b" * 300}
    cache.put("stats", key, members)
    path = cache.path("stats", key)
    good = path.read_bytes()
    for index in range(0, len(good), 5):
        data = bytearray(good)
        data[index] ^= 0xFF
        path.write_bytes(bytes(data))
        entry = cache.get("stats", key)  # never raises
        assert entry is None or set(entry) <= set(members)


def test_an_entry_copied_over_another_is_caught_by_its_key(tmp_path):
    """A sync tool or a bad copy puts a valid entry in another's place: it names its own key, so it is
    removed with a warning naming the entry and reads as a miss, like a damaged one."""
    cache = Cache(tmp_path)
    one, two = make_key("one"), make_key("two")
    cache.put("vis", one, {"0.webp": b"one"})
    cache.put("vis", two, {"0.webp": b"two"})
    cache.path("vis", two).write_bytes(cache.path("vis", one).read_bytes())
    assert cache.get("vis", two) is None and cache.names("vis", two) == set()
    assert cache.warnings == [f"cache entry vis/{two} holds vis/{one} of version {COMPUTE_VERSION}: removed, and "
                              f"computed again"]
    assert not cache.path("vis", two).exists() and cache.get("vis", one) == {"0.webp": b"one"}
    cache.put("acts", two, {"values.npy": np.zeros(3, np.float32)})  # the same key under another kind
    cache.path("vis", two).parent.mkdir(parents=True, exist_ok=True)
    cache.path("vis", two).write_bytes(cache.path("acts", two).read_bytes())
    assert cache.get("vis", two) is None and f"holds acts/{two}" in cache.warnings[-1]


def test_arrays_of_another_shape_or_type_read_as_a_miss(tmp_path):
    cache = Cache(tmp_path)
    key = make_key("shape")
    cache.put("acts", key, {"values.npy": np.zeros(5, np.float32), "positions.npy": np.zeros(5, np.int64)})
    right = {"values.npy": ((5,), "f"), "positions.npy": ((5,), "i")}
    assert cache.get("acts", key, expect=right) is not None
    assert cache.get("acts", key, expect={"*.npy": ((None,), "")}) is not None
    assert cache.get("acts", key, expect={"values.npy": ((2, None), "f")}) is None
    assert "has values.npy of shape (5,), expected (2, any)" in cache.warnings[-1]
    assert not cache.path("acts", key).exists()
    cache.put("acts", key, {"values.npy": np.zeros((4, 5), np.float64)})
    assert cache.get("acts", key, expect={"values.npy": ((..., 5), "f")}) is not None
    assert cache.get("acts", key, expect={"values.npy": ((4, ...), "f")}) is not None
    assert cache.get("acts", key, expect={"values.npy": ((..., 5), "i")}) is None
    assert "type float64" in cache.warnings[-1]


def test_an_entry_without_its_label_is_not_trusted(tmp_path):
    """Entries of an older sitegen (or any zip put in the folder) name no key: they are computed again."""
    import zipfile
    cache = Cache(tmp_path)
    key = make_key("old")
    cache.path("vis", key).parent.mkdir(parents=True)
    with zipfile.ZipFile(cache.path("vis", key), "w") as archive:
        archive.writestr("0.webp", b"old")
    assert cache.get("vis", key) is None and "does not name itself" in cache.warnings[0]


def test_the_folder_is_marked_when_first_written_and_reads_write_nothing(tmp_path):
    cache = Cache(tmp_path / "cache")
    assert cache.get("vis", make_key("a")) is None and cache.read_json("manifests/x.json") is None
    assert not (tmp_path / "cache").exists()
    cache.put("vis", make_key("a"), {"0.webp": b"a"})
    assert is_cache(tmp_path / "cache") and "Signature: 8a477f597d28d172789f06886806bc55" in \
        (tmp_path / "cache" / "CACHEDIR.TAG").read_text()
    path = cache.write_json("manifests/x.json", {"a": 1})
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    cache.write_json("manifests/x.json", {"a": 1})  # the same document: not written again
    assert path.stat().st_mtime_ns == before - 10**9


def _add_many(root, first, count):
    cache = Cache(root)
    key = make_key("shared")
    for n in range(first, first + count):
        cache.add("edges", key, {f"{n}.npy": np.full(3, n, np.float32)})


@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_two_processes_adding_to_one_entry_keep_every_member(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_many, args=(tmp_path, first, 150)) for first in (0, 1000)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    entry = Cache(tmp_path).get("edges", make_key("shared"))
    assert sorted(int(name.removesuffix(".npy")) for name in entry) == [*range(150), *range(1000, 1150)]
