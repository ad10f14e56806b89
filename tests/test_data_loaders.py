"""Loaders on the real files in $RECFORGE_DATA (skipped when absent); download paths offline."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA_DIR, data_path

import recforge as rf
from recforge import datasets as loaders


def test_movielens_100k():
    data_path("ml-100k", "u.data")
    df = rf.datasets.load_movielens("100k", data_home=DATA_DIR)
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert len(df) == 100_000 and df.user.nunique() == 943 and df.item.nunique() == 1682
    assert df.rating.dtype == np.float32 and df.user.dtype == np.int64 and df.timestamp.dtype == np.int64
    # counts per rating value from ml-100k/README.md
    assert df.rating.value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert df.iloc[0].tolist() == [196, 242, 3, 881250949]


def test_movielens_latest_small_and_titles():
    data_path("ml-latest-small", "ratings.csv")
    df = rf.datasets.load_movielens("latest-small", data_home=DATA_DIR)
    assert len(df) == 100_836 and df.user.nunique() == 610 and df.item.nunique() == 9724
    assert set(np.unique(df.rating)) == set(np.arange(1, 11) / 2)
    titles = rf.datasets.movielens_titles("latest-small", data_home=DATA_DIR)
    assert len(titles) == 9742 and titles.loc[1] == "Toy Story (1995)"
    assert set(df.item) <= set(titles.index)


def test_movielens_titles_100k_and_1m():
    data_path("ml-100k", "u.item")
    t = rf.datasets.movielens_titles("100k", data_home=DATA_DIR)
    assert len(t) == 1682 and t.loc[1] == "Toy Story (1995)" and t.index.name == "item"
    assert t.loc[1682] == "Scream of Stone (Schrei aus Stein) (1991)"
    data_path("ml-1m", "movies.dat")
    t1 = rf.datasets.movielens_titles("1m", data_home=DATA_DIR)
    assert len(t1) == 3883 and t1.loc[2] == "Jumanji (1995)"
    assert any("é" in s for s in t1)  # latin-1 decoded (e.g. "Misérables")


def test_movielens_1m_ratings_absent_message(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    with pytest.raises(FileNotFoundError) as err:
        rf.datasets.load_movielens("1m", data_home=tmp_path / "arg")
    msg = str(err.value)
    for where in ("arg", "env", "home"):
        assert str(tmp_path / where) in msg
    assert "ml-1m/ratings.dat" in msg and "download=True" in msg and "ml-1m.zip" in msg


def test_lastfm_2k():
    data_path("hetrec2011-lastfm-2k", "user_artists.dat")
    df = rf.datasets.load_lastfm("2k", data_home=DATA_DIR)
    assert list(df.columns) == ["user", "item", "weight"]
    assert len(df) == 92_834 and df.user.nunique() == 1892 and df.item.nunique() == 17_632
    assert df.weight.min() == 1 and df.weight.max() == 352_698


def test_lastfm_360k_layout(tmp_path):
    folder = tmp_path / "lastfm-dataset-360K"
    folder.mkdir()
    (folder / "usersha1-artmbid-artname-plays.tsv").write_text(
        "00000c28\t3bd73256-3905\tbetty blowtorch\t2137\n"
        '00000c28\t\tdie "Ärzte"\t1099\n'
        "00001411\t\t\t897\n"  # no artist name: dropped
        "00001411\tabc\tbetty blowtorch\t5\n",
        encoding="utf-8",
    )
    df = rf.datasets.load_lastfm("360k", data_home=tmp_path)
    assert df.user.tolist() == ["00000c28", "00000c28", "00001411"]
    assert df.item.tolist() == ["betty blowtorch", 'die "Ärzte"', "betty blowtorch"]
    assert df.weight.tolist() == [2137, 1099, 5]


def test_sasrec_video_games():
    data_path("sasrec-amazon-video-games", "Video.txt")
    df = rf.datasets.load_sasrec("video-games", data_home=DATA_DIR)
    assert len(df) == 287_107 and df.user.nunique() == 31_013 and df.item.nunique() == 23_715
    first = df[df.user == 1]
    assert first.timestamp.tolist() == list(range(len(first)))
    inter = rf.Interactions.from_pandas(df, time_col="timestamp")
    train, test = rf.split.leave_last_out(inter)
    # the test item is each user's last line in the file
    last = df.groupby("user").tail(1)
    got = test.to_pandas()
    assert len(got) == (df.groupby("user").size() >= 2).sum()
    merged = got.merge(last, on="user")
    assert (merged.item_x == merged.item_y).all()


@pytest.mark.parametrize(
    "name, n_users, n_items, total",
    [("lastfm", 1741, 2665, 69_149), ("AMusic", 1776, 12_929, 46_087), ("AToy", 3137, 33_953, 84_642)],
)
def test_ncf_format_deepcf(name, n_users, n_items, total):
    data_path("deepcf", f"{name}.train.rating")
    train, test, neg = rf.datasets.load_ncf_format(f"deepcf/{name}", data_home=DATA_DIR)
    assert len(train) + len(test) == total
    assert len(test) == n_users and neg.shape == (n_users, 99) and neg.dtype == np.int64
    assert pd.concat([train.user, test.user]).nunique() == n_users
    assert max(train.item.max(), test.item.max(), neg.max()) < n_items
    # Rows line up with the test rows. The published negatives are *mostly* unseen items: the
    # DeepCF files hold a few (under 2%) of the user's training items, even the test item.
    seen = set(zip(train.user, train.item)) | set(zip(test.user, test.item))
    clashes = sum((u, i) in seen for u, row in zip(test.user, neg) for i in row)
    assert clashes < 0.02 * neg.size


def test_ncf_format_mismatch_and_missing(tmp_path):
    (tmp_path / "x.train.rating").write_text("0\t1\t5\t100\n1\t2\t4\t101\n")
    (tmp_path / "x.test.rating").write_text("0\t3\t5\t102\n")
    (tmp_path / "x.test.negative").write_text("(0,3)\t7\t8\t9\n")
    train, test, neg = rf.datasets.load_ncf_format(str(tmp_path / "x"))
    assert list(train.columns) == ["user", "item", "rating", "timestamp"] and neg.tolist() == [[7, 8, 9]]
    (tmp_path / "x.test.negative").write_text("(0,4)\t7\t8\t9\n")
    with pytest.raises(ValueError, match="does not match"):
        rf.datasets.load_ncf_format("x", data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="y.train.rating"):
        rf.datasets.load_ncf_format("y", data_home=tmp_path)


def test_load_csv_and_parquet_errors(tmp_path):
    p = tmp_path / "d.csv"
    pd.DataFrame({"uid": ["a", "b"], "iid": [1, 2], "score": [0.5, 1.0], "ts": [3, 4]}).to_csv(p, index=False)
    df = rf.datasets.load_csv(p, user_col="uid", item_col="iid", weight_col="score", time_col="ts")
    assert list(df.columns) == ["user", "item", "weight", "timestamp"] and df.user.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match=r"column\(s\) \['rating'\] not found"):
        rf.datasets.load_csv(p, user_col="uid", item_col="iid", weight_col="rating")
    with pytest.raises(FileNotFoundError, match="no such file"):
        rf.datasets.load_csv(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        rf.datasets.load_parquet(tmp_path / "nope.parquet")


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        rf.datasets.load_movielens("5m")
    with pytest.raises(ValueError, match="name must be one of"):
        rf.datasets.load_sasrec("steam")


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    assert loaders.data_home_candidates(tmp_path / "arg") == [
        tmp_path / "arg",
        tmp_path / "env",
        tmp_path / "home" / ".cache" / "recforge",
    ]
    for where, rating in (("home/.cache/recforge", 1), ("env", 2), ("arg", 3)):
        d = tmp_path / where / "ml-100k"
        d.mkdir(parents=True)
        (d / "u.data").write_text(f"1\t2\t{rating}\t100\n")
        assert rf.datasets.load_movielens("100k", data_home=tmp_path / "arg").rating.tolist() == [rating]


# ---------------------------------------------------------------------------- downloads (offline)
def _zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def fake_source(monkeypatch, tmp_path):
    """A MovieLens-100K source whose zip is served by a fake _fetch."""
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    payload = _zip_bytes({"ml-100k/u.data": "7\t8\t4\t999\n7\t9\t5\t1000\n", "ml-100k/u.item": "8|Film (1990)|x\n"})
    calls = []

    def fake_fetch(url, dest, progress=True):
        calls.append(url)
        Path(dest).write_bytes(payload)

    monkeypatch.setattr(loaders, "_fetch", fake_fetch)
    src = loaders._MOVIELENS["100k"]
    return payload, calls, src


def test_download_with_good_checksum(fake_source, monkeypatch, tmp_path):
    payload, calls, src = fake_source
    monkeypatch.setitem(
        loaders._MOVIELENS, "100k", loaders._Source(src.name, src.folders, src.url, hashlib.sha256(payload).hexdigest())
    )
    with pytest.raises(FileNotFoundError, match="download=True"):
        rf.datasets.load_movielens("100k", data_home=tmp_path / "dl")
    assert calls == []  # download=False never fetches
    df = rf.datasets.load_movielens("100k", data_home=tmp_path / "dl", download=True, progress=False)
    assert df.item.tolist() == [8, 9] and calls == [src.url]
    assert (tmp_path / "dl" / "ml-100k" / "u.data").is_file()
    assert not list((tmp_path / "dl").glob("*.zip*"))  # archive removed after unpacking
    rf.datasets.load_movielens("100k", data_home=tmp_path / "dl", download=True)
    assert len(calls) == 1  # present now: not fetched again
    assert rf.datasets.movielens_titles("100k", data_home=tmp_path / "dl").tolist() == ["Film (1990)"]


def test_download_with_bad_checksum(fake_source, tmp_path):
    _, calls, src = fake_source  # the real checksum cannot match the fake payload
    with pytest.raises(ValueError, match="checksum mismatch.*expected sha256 50d2a9"):
        rf.datasets.load_movielens("100k", data_home=tmp_path / "dl", download=True, progress=False)
    assert calls == [src.url]
    assert not (tmp_path / "dl" / "ml-100k").exists()
    assert not list((tmp_path / "dl").iterdir())  # nothing left behind


def test_download_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")

    def offline(url, dest, progress=True):
        import urllib.error

        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(loaders, "_fetch", offline)
    with pytest.raises(FileNotFoundError) as err:
        rf.datasets.load_lastfm("2k", download=True)
    msg = str(err.value)
    assert "could not download https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip" in msg
    assert str(tmp_path / "home" / ".cache" / "recforge" / "hetrec2011-lastfm-2k" / "user_artists.dat") in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_zip_slip_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "nothing-here"))
    payload = _zip_bytes({"../evil.txt": "x", "ml-100k/u.data": "1\t1\t1\t1\n"})
    monkeypatch.setattr(loaders, "_fetch", lambda url, dest, progress=True: Path(dest).write_bytes(payload))
    src = loaders._MOVIELENS["100k"]
    monkeypatch.setitem(
        loaders._MOVIELENS, "100k", loaders._Source(src.name, src.folders, src.url, hashlib.sha256(payload).hexdigest())
    )
    with pytest.raises(ValueError, match="unsafe member path"):
        rf.datasets.load_movielens("100k", data_home=tmp_path / "dl", download=True, progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_movielens_dat_and_csv_formats(tmp_path):
    """The 1M/10M '::' layout and the 20M/25M csv layout, on small files of the same shape."""
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3::978302109\n2::1357::4.5::978298709\n"
    )
    (tmp_path / "ml-1m" / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation\n73::Misérables, Les (1995)::Drama\n".encode("latin-1")
    )
    df = rf.datasets.load_movielens("1m", data_home=tmp_path)
    assert df.values.tolist() == [[1, 1193, 5.0, 978300760], [1, 661, 3.0, 978302109], [2, 1357, 4.5, 978298709]]
    assert rf.datasets.movielens_titles("1m", data_home=tmp_path).loc[73] == "Misérables, Les (1995)"
    (tmp_path / "ml-10M100K").mkdir()  # the 10M zip's own folder name
    (tmp_path / "ml-10M100K" / "ratings.dat").write_text("5::10::0.5::1\n")
    assert rf.datasets.load_movielens("10m", data_home=tmp_path).values.tolist() == [[5, 10, 0.5, 1]]
    (tmp_path / "ml-25m").mkdir()
    (tmp_path / "ml-25m" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n3,4,3.5,7\n")
    (tmp_path / "ml-25m" / "movies.csv").write_text('movieId,title,genres\n4,"Heat, The (1995)",Action\n')
    assert rf.datasets.load_movielens("25m", data_home=tmp_path).values.tolist() == [[3, 4, 3.5, 7]]
    assert rf.datasets.movielens_titles("25m", data_home=tmp_path).loc[4] == "Heat, The (1995)"


def test_download_without_known_checksum_logs_it(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RECFORGE_DATA", str(tmp_path / "nothing-here"))
    payload = _zip_bytes(
        {"ml-10M100K/ratings.dat": "1::2::3.5::4\n", "ml-10M100K/movies.dat": "2::Film (1990)::Drama\n"}
    )
    monkeypatch.setattr(loaders, "_fetch", lambda url, dest, progress=True: Path(dest).write_bytes(payload))
    with caplog.at_level("WARNING", logger="recforge.datasets"):
        df = rf.datasets.load_movielens("10m", data_home=tmp_path / "dl", download=True, progress=False)
    assert df.values.tolist() == [[1, 2, 3.5, 4]]
    assert hashlib.sha256(payload).hexdigest() in caplog.text
    assert (tmp_path / "dl" / "ml-10M100K" / "movies.dat").is_file()


# -- the registry --------------------------------------------------------------------------------
def test_registry_names_one_spelling_each():
    names = rf.datasets.names()
    assert len(names) == len(set(names)) and {"ml-100k", "lastfm-2k", "citeulike-a", "s3rec-beauty"} <= set(names)
    assert all(rf.datasets.info(n).feedback in ("ratings", "counts", "implicit") for n in names)
    with pytest.raises(ValueError, match="did you mean ml-100k"):
        rf.datasets.load("movielens-100k")


def test_registry_load_matches_the_loaders():
    data_path("ml-100k", "u.data")
    pd.testing.assert_frame_equal(rf.datasets.load("ml-100k"), loaders.load_movielens("100k"))
    titles = rf.datasets.item_names("ml-100k")
    assert titles[1] == "Toy Story (1995)"
    data_path("hetrec2011-lastfm-2k", "artists.dat")
    df = rf.datasets.load("lastfm-2k")
    assert list(df.columns) == ["user", "item", "weight"]
    artists = rf.datasets.item_names("lastfm-2k")
    assert artists[1] == "MALICE MIZER" and df["item"].isin(artists.index).all()
    assert rf.datasets.item_names("citeulike-a") is None  # no names for this set


def test_citeulike_a():
    data_path("citeulike-a", "users.dat")
    df = rf.datasets.load("citeulike-a")
    # The counts of the folder's README (its line counts checked against each line's own count).
    assert len(df) == 204_986 and df["user"].nunique() == 5_551 and df["item"].nunique() == 16_980
    assert df["item"].min() == 0 and df["item"].max() == 16_979 and df["user"].max() == 5_550


@pytest.mark.parametrize(
    "name,n_users,n_items,total",
    [
        ("beauty", 22_363, 12_101, 198_502),
        ("sports", 35_598, 18_357, 296_337),
        ("toys", 19_412, 11_924, 167_597),
        ("yelp", 30_431, 20_033, 316_354),
        ("lastfm", 1_090, 3_646, 52_551),
    ],  # fmt: skip
)
def test_s3rec_sequences(name, n_users, n_items, total):
    data_path("s3rec-sequential", "Beauty.txt")
    df = rf.datasets.load(f"s3rec-{name}")
    assert (len(df), df["user"].nunique(), df["item"].nunique()) == (total, n_users, n_items)  # the paper's Table 1
    first = df[df["user"] == df["user"].iloc[0]]
    assert first["timestamp"].tolist() == list(range(len(first)))  # position in the sequence
    if name == "beauty":
        assert first["item"].tolist() == [1, 2, 3, 4, 5]  # the file's first line: "1 1 2 3 4 5"


def test_sequence_and_citeulike_files_are_checked(tmp_path):
    (tmp_path / "citeulike-a").mkdir()
    (tmp_path / "citeulike-a" / "users.dat").write_text("2 5 6\n3 1 2\n")
    with pytest.raises(ValueError, match="line 2"):
        loaders.load_citeulike(tmp_path)
    (tmp_path / "s3rec-sequential").mkdir()
    (tmp_path / "s3rec-sequential" / "Yelp.txt").write_text("1 3 4\n2 x\n")
    with pytest.raises(ValueError, match="line 2"):
        loaders.load_s3rec("yelp", tmp_path)


def test_download_progress_follows_the_package_switch(fake_source, monkeypatch, tmp_path):
    payload, _, src = fake_source
    monkeypatch.setitem(
        loaders._MOVIELENS, "100k", loaders._Source(src.name, src.folders, src.url, hashlib.sha256(payload).hexdigest())
    )
    seen = []
    fetch = loaders._fetch
    monkeypatch.setattr(loaders, "_fetch", lambda url, dest, progress: (seen.append(progress), fetch(url, dest)))
    rf.set_config(progress=False)
    try:
        rf.datasets.load("ml-100k", data_home=tmp_path / "a", download=True)  # progress=None: the switch
    finally:
        rf.set_config(progress=True)
    rf.datasets.load("ml-100k", data_home=tmp_path / "b", download=True)
    assert seen == [False, True]
