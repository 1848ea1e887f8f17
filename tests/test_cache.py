import numpy as np

from sitegen.store.cache import Cache, make_key


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
    assert cache.damaged == [path]
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
