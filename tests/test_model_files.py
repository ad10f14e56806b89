"""Model files under attack (issue 10, "Files"): ``rf.load`` of a damaged or hostile file raises only
ValueError, reads only the declared members, bounded by their declared sizes, and refuses what would
score garbage; ``save`` is atomic (no temporary file survives a failure or a kill) and honours the
umask. Hand-built archives below: each one is what ``save`` writes except for one deliberate flaw.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import recforge as rf
from recforge.models.base import TEMP_SUFFIX


def small_train() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    m = sp.random(12, 9, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    m.data[:] = 1.0
    return m


@pytest.fixture(scope="module")
def models() -> dict[str, rf.Recommender]:
    train = small_train()
    return {
        "popular": rf.MostPopular().fit(train),
        "als": rf.ALS(factors=3, epochs=1, threads=1).fit(train, progress=False),
        "mlp": rf.MLPScorer(factors=2, layers=(3,), epochs=1, threads=1).fit(train, progress=False),
    }


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def members_of(model: rf.Recommender, tmp_path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays ``model.save`` writes."""
    path = tmp_path / "source.rf"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        arrays = {n[:-4]: np.lib.format.read_array(z.open(n)) for n in z.namelist()}
    return json.loads(arrays.pop("__meta__").tobytes()), arrays


def write_archive(path, meta: dict, arrays: dict[str, np.ndarray], *, extra=(), compression=zipfile.ZIP_STORED,
                  declare=True):  # fmt: skip
    """A model archive of ``arrays`` (declared in ``meta`` from their own dtype/shape when ``declare``)
    plus ``extra`` raw (name, bytes) members."""
    if declare:
        meta = {**meta, "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}}
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("__meta__.npy", npy(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
        for name, a in arrays.items():
            z.writestr(f"{name}.npy", npy(a))
        for name, raw in extra:
            z.writestr(name, raw)
    return path


def assert_refused(path, match: str = ".") -> ValueError:
    with pytest.raises(ValueError, match=match) as info:
        rf.load(path)
    assert type(info.value) is not NotImplementedError
    assert "allow_pickle" not in str(info.value)
    return info.value


def test_a_hand_built_archive_loads(models, tmp_path):  # the baseline every flaw below departs from
    meta, arrays = members_of(models["als"], tmp_path)
    back = rf.load(write_archive(tmp_path / "m.rf", meta, arrays))
    np.testing.assert_array_equal(back.recommend([0, 1], k=3)[0], models["als"].recommend([0, 1], k=3)[0])


# -- dtypes and values that would be converted or score garbage ------------------------------------
@pytest.mark.parametrize("dtype", ["complex64", "datetime64[s]", "timedelta64", "<U4", "S4", "object", "V4"])
def test_load_refuses_arrays_of_other_dtypes(dtype, models, tmp_path):
    meta, arrays = members_of(models["als"], tmp_path)
    uf = arrays["user_factors"]
    arrays["user_factors"] = np.zeros(uf.shape, dtype) if dtype != "object" else np.full(uf.shape, None, object)
    assert_refused(write_archive(tmp_path / "m.rf", meta, arrays), "user_factors.*unsupported dtype")


@pytest.mark.parametrize("value", [np.nan, np.inf, 3e38, 1e19])
@pytest.mark.parametrize("name", ["item_factors", "train_data", "dense", "item_popularity"])
def test_load_refuses_non_finite_or_absurd_values(name, value, models, tmp_path):
    model = {"dense": "mlp", "item_popularity": "popular"}.get(name, "als")
    meta, arrays = members_of(models[model], tmp_path)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = value
    assert_refused(write_archive(tmp_path / "m.rf", meta, arrays), name)


def test_load_refuses_factors_whose_scores_would_overflow(tmp_path):
    big = np.full((4, 400), 1e18, np.float32)  # each value allowed; 400 products of 1e36 overflow float32
    rf.ALS.from_factors(big, big).save(tmp_path / "m.rf")
    assert_refused(tmp_path / "m.rf", "too large")


def test_load_refuses_mlp_weights_whose_scores_would_overflow(models, tmp_path):
    meta, arrays = members_of(models["mlp"], tmp_path)
    arrays["dense"] = np.full_like(arrays["dense"], 1e18)  # each value allowed; ~1e18^3 through one layer
    arrays["user_embedding"] = np.full_like(arrays["user_embedding"], 1e18)
    assert_refused(write_archive(tmp_path / "m.rf", meta, arrays), "too large")
    meta, arrays = members_of(models["mlp"], tmp_path)
    back = rf.load(write_archive(tmp_path / "ok.rf", meta, arrays))  # the fitted weights themselves pass
    assert np.isfinite(back.score([0, 1], [2, 3])).all()


# -- what is read: the declared members, bounded by their declared sizes ---------------------------
def test_load_refuses_undeclared_members_without_reading_them(models, tmp_path):
    meta, arrays = members_of(models["popular"], tmp_path)
    bomb = b"\0" * (64 << 20)  # deflates to ~64 KB: inflating it would be the cost of the attack
    path = write_archive(tmp_path / "m.rf", meta, arrays, extra=[("junk.npy", bomb)])
    assert_refused(path, "does not declare.*junk")


def test_load_refuses_a_huge_declared_shape_without_allocating_it(models, tmp_path):
    meta, arrays = members_of(models["popular"], tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    arrays.pop("item_popularity")
    meta["arrays"] = {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}
    meta["arrays"]["item_popularity"] = ["float32", [1 << 40]]  # 4 TiB
    path = write_archive(tmp_path / "m.rf", meta, arrays, extra=[("item_popularity.npy", header.getvalue())],
                         declare=False)  # fmt: skip
    assert_refused(path, "item_popularity.*bytes declared")


def test_load_refuses_a_header_that_contradicts_the_metadata(models, tmp_path):
    meta, arrays = members_of(models["popular"], tmp_path)
    path = write_archive(tmp_path / "m.rf", meta, arrays)
    meta["arrays"]["item_popularity"][1] = [4]
    path = write_archive(tmp_path / "m.rf", meta, arrays, declare=False)
    assert_refused(path, "item_popularity.*declared dtype/shape")


def test_load_refuses_compressed_and_duplicate_members(models, tmp_path):
    meta, arrays = members_of(models["popular"], tmp_path)
    assert_refused(write_archive(tmp_path / "c.rf", meta, arrays, compression=zipfile.ZIP_DEFLATED), "compressed")
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = write_archive(tmp_path / "d.rf", meta, arrays, extra=[("train_data.npy", npy(arrays["train_data"]))])
    assert_refused(dup, "twice")


def test_load_refuses_npy_headers_it_does_not_write(models, tmp_path):
    meta, arrays = members_of(models["popular"], tmp_path)
    raw = bytearray(npy(arrays["item_popularity"]))
    raw[6] = 3  # .npy format version 3.0
    arrays.pop("item_popularity")
    meta["arrays"] = {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}
    meta["arrays"]["item_popularity"] = ["float32", [9]]
    path = write_archive(tmp_path / "m.rf", meta, arrays, extra=[("item_popularity.npy", bytes(raw))], declare=False)
    assert_refused(path, "version")


def test_load_refuses_a_damaged_npy_header(models, tmp_path):  # found by tests/fuzz/atheris_targets.py load
    meta, arrays = members_of(models["popular"], tmp_path)
    raw = bytearray(npy(arrays["item_popularity"]))
    raw[raw.index(b"{")] = ord("z")  # numpy's header parser then raises tokenize.TokenError
    arrays.pop("item_popularity")
    meta["arrays"] = {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}
    meta["arrays"]["item_popularity"] = ["float32", [9]]
    path = write_archive(tmp_path / "m.rf", meta, arrays, extra=[("item_popularity.npy", bytes(raw))], declare=False)
    assert_refused(path, "item_popularity.*damaged .npy header")


# -- metadata --------------------------------------------------------------------------------------
def meta_damage():
    return {
        "deeply nested": lambda m: "[" * 100_000 + "]" * 100_000,  # json.loads: RecursionError
        "not an object": lambda m: [1, 2],
        "class not a string": lambda m: {**m, "class": ["ALS"]},
        "unknown class": lambda m: {**m, "class": "Pickle"},
        "version": lambda m: {**m, "format_version": 2**70},
        "params not a mapping": lambda m: {**m, "params": [1]},
        "unknown parameter": lambda m: {**m, "params": {**m["params"], "evil": 1}},
        "parameter of the wrong type": lambda m: {**m, "params": {**m["params"], "factors": {"a": 1}}},
        "huge parameter": lambda m: {**m, "params": {**m["params"], "factors": 10**400}},
        "array spec": lambda m: {**m, "arrays": {**m["arrays"], "user_factors": "float32"}},
        "array name": lambda m: {**m, "arrays": {**m["arrays"], "../x": ["float32", [1]]}},
        "negative dimension": lambda m: {**m, "arrays": {**m["arrays"], "user_factors": ["float32", [-1, 3]]}},
        "unknown dtype": lambda m: {**m, "arrays": {**m["arrays"], "user_factors": ["evil", [12, 3]]}},
        "no training matrix": lambda m: {**m, "arrays": {k: v for k, v in m["arrays"].items() if k != "train_data"}},
    }


@pytest.mark.parametrize("damage", meta_damage())
def test_load_refuses_damaged_metadata(damage, models, tmp_path):
    meta, arrays = members_of(models["als"], tmp_path)
    meta["arrays"] = {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}
    bad = meta_damage()[damage](meta)
    raw = bad.encode() if isinstance(bad, str) else json.dumps(bad).encode()
    with zipfile.ZipFile(tmp_path / "m.rf", "w") as z:
        z.writestr("__meta__.npy", npy(np.frombuffer(raw, np.uint8)))
        for name, a in arrays.items():
            z.writestr(f"{name}.npy", npy(a))
    assert_refused(tmp_path / "m.rf")


def test_load_refuses_a_negative_training_shape(models, tmp_path):
    meta, arrays = members_of(models["popular"], tmp_path)
    arrays["train_shape"] = np.array([-12, 9], np.int64)
    assert_refused(write_archive(tmp_path / "m.rf", meta, arrays), "inconsistent")


def test_every_truncation_and_byte_flip_gives_valueerror(models, tmp_path):
    path = tmp_path / "m.rf"
    models["als"].save(path)
    raw = path.read_bytes()
    rng = np.random.default_rng(1)
    for n in range(0, len(raw), max(1, len(raw) // 97)):  # truncations
        (tmp_path / "bad.rf").write_bytes(raw[:n])
        assert_refused(tmp_path / "bad.rf")
    for pos in rng.integers(0, len(raw), 300):  # single-byte damage: refused or, where harmless, loaded
        bad = bytearray(raw)
        bad[pos] ^= 1 << int(rng.integers(8))
        (tmp_path / "bad.rf").write_bytes(bytes(bad))
        try:
            back = rf.load(tmp_path / "bad.rf")
        except ValueError as exc:
            assert "allow_pickle" not in str(exc)
        else:  # a flip the format cannot see (e.g. in an unused zip field): the model is intact
            np.testing.assert_array_equal(back.recommend([0], k=3)[0], models["als"].recommend([0], k=3)[0])


# -- paths -----------------------------------------------------------------------------------------
def test_save_and_load_name_a_bad_path(models, tmp_path):
    model = models["popular"]
    for call in (model.save, rf.load):
        with pytest.raises(ValueError, match="path must name a file, got ''"):
            call("")
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            call(3)
    with pytest.raises(ValueError, match="directory"):
        model.save(tmp_path)
    with pytest.raises(FileNotFoundError):
        rf.load(tmp_path / "missing.rf")


# -- atomic saves ----------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_honour_the_umask(umask, models, tmp_path):
    old = os.umask(umask)
    try:
        models["popular"].save(tmp_path / "m.rf")
    finally:
        os.umask(old)
    assert (tmp_path / "m.rf").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmpfile, models, tmp_path, monkeypatch):
    if not tmpfile:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)  # the fallback of other systems
    path = tmp_path / "m.rf"
    models["popular"].save(path)
    before = path.read_bytes()
    seen_during_write = []

    def failing_savez(f, **arrays):
        f.write(b"half a file")
        seen_during_write.extend(os.listdir(tmp_path))
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        models["als"].save(path)
    assert os.listdir(tmp_path) == ["m.rf"] and path.read_bytes() == before
    if not tmpfile:  # the temporary name says what it is
        assert any(n.startswith("m.rf.") and n.endswith(TEMP_SUFFIX) for n in seen_during_write)


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="an unnamed temporary file needs Linux's O_TMPFILE")
def test_a_killed_save_leaves_no_temporary(tmp_path):
    child = textwrap.dedent(f"""
        import os, signal, numpy as np, scipy.sparse as sp, recforge as rf
        model = rf.MostPopular().fit(sp.csr_matrix(np.eye(4, dtype=np.float32)))
        def killed_savez(f, **arrays):
            f.write(b"x" * 100000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = killed_savez
        model.save({str(tmp_path / "m.rf")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert os.listdir(tmp_path) == []
