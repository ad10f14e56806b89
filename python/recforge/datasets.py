"""``rf.datasets``: loaders for public recommender data sets, each read in its provider's own file layout,
and the synthetic generator (``synthetic``, defined in ``recforge.data.synthetic``).

One registry names every set, for Python and the ``recforge`` command alike: ``names()`` lists them,
``load(name)`` reads one as a DataFrame (``user``, ``item`` and, where the set has them, ``rating``,
``weight`` (play counts) and ``timestamp``), ``item_names(name)`` gives readable item names where
the set has them (MovieLens titles, Last.fm artist names) and ``info(name)`` describes it::

    >>> import recforge as rf
    >>> rf.datasets.names()[:3]
    ['ml-100k', 'ml-1m', 'ml-10m']
    >>> rf.datasets.info("citeulike-a").feedback
    'implicit'

Where files are looked for, in order: the ``data_home`` argument, ``$RECFORGE_DATA``,
``~/.cache/recforge``. Each set sits in one folder named as the provider names it
(``ml-100k/u.data``, ``ml-latest-small/ratings.csv``, ``hetrec2011-lastfm-2k/user_artists.dat``,
``sasrec-amazon-video-games/Video.txt``, ``deepcf/lastfm.train.rating`` ...).

Nothing is downloaded unless ``download=True`` and the file is absent; then the provider's
archive is fetched into ``data_home`` (or ``~/.cache/recforge``), its SHA-256 checked and
unpacked there. When a file cannot be had, the error says which file was looked for where.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._config import show_progress
from .data.synthetic import SyntheticTruth, synthetic

__all__ = [
    "names",
    "load",
    "info",
    "item_names",
    "DatasetInfo",
    "data_home_candidates",
    "load_movielens",
    "movielens_titles",
    "movielens_genres",
    "movielens_users",
    "load_lastfm",
    "load_sasrec",
    "load_s3rec",
    "load_citeulike",
    "lastfm_artists",
    "load_ncf_format",
    "load_csv",
    "load_parquet",
    "synthetic",
    "SyntheticTruth",
]

log = logging.getLogger(__name__)

ENV_VAR = "RECFORGE_DATA"
_GROUPLENS = "https://files.grouplens.org/datasets"


@dataclass(frozen=True)
class _Source:
    """A data set folder, where its archive comes from, and the archive's SHA-256."""

    name: str  # for messages
    folders: tuple[str, ...]  # folder names searched; downloads unpack into folders[0]
    url: str | None = None
    sha256: str | None = None  # None: none known; the computed one is logged


# SHA-256 of the provider archives. MovieLens: as recorded in tensorflow/datasets'
# url_checksums (ml-latest-small's matches the copy in shared/data byte for byte). HetRec
# Last.fm 2K: as recorded by another project's downloader, not verified here. No SHA-256 is
# known for ml-10m and the Last.fm 360K tarball: for those the computed one is logged.
_MOVIELENS = {
    "100k": _Source(
        "MovieLens 100K",
        ("ml-100k",),
        f"{_GROUPLENS}/movielens/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    ),
    "1m": _Source(
        "MovieLens 1M",
        ("ml-1m",),
        f"{_GROUPLENS}/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    ),
    "10m": _Source("MovieLens 10M", ("ml-10M100K", "ml-10m"), f"{_GROUPLENS}/movielens/ml-10m.zip"),
    "20m": _Source(
        "MovieLens 20M",
        ("ml-20m",),
        f"{_GROUPLENS}/movielens/ml-20m.zip",
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    ),
    "25m": _Source(
        "MovieLens 25M",
        ("ml-25m",),
        f"{_GROUPLENS}/movielens/ml-25m.zip",
        "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    ),
    "latest-small": _Source(
        "MovieLens latest-small",
        ("ml-latest-small",),
        f"{_GROUPLENS}/movielens/ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
    ),
}
# variant -> (ratings file, movies file, format)
_MOVIELENS_FILES = {
    "100k": ("u.data", "u.item", "100k"),
    "1m": ("ratings.dat", "movies.dat", "dat"),
    "10m": ("ratings.dat", "movies.dat", "dat"),
    "20m": ("ratings.csv", "movies.csv", "csv"),
    "25m": ("ratings.csv", "movies.csv", "csv"),
    "latest-small": ("ratings.csv", "movies.csv", "csv"),
}
_LASTFM = {
    "2k": (
        _Source(
            "HetRec 2011 Last.fm 2K",
            ("hetrec2011-lastfm-2k",),
            f"{_GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip",
            "6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
        ),
        "user_artists.dat",
    ),
    "360k": (
        _Source(
            "Last.fm 360K",
            ("lastfm-dataset-360K",),
            "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz",
        ),
        "usersha1-artmbid-artname-plays.tsv",
    ),
}
_SASREC = {
    "video-games": (_Source("SASRec Amazon Video Games", ("sasrec-amazon-video-games",)), "Video.txt"),
}
_S3REC_SOURCE = _Source("S3-Rec sequential data (Zhou et al. 2020)", ("s3rec-sequential",))
_S3REC = {"beauty": "Beauty.txt", "sports": "Sports_and_Outdoors.txt", "toys": "Toys_and_Games.txt",
          "yelp": "Yelp.txt", "lastfm": "LastFM.txt"}  # fmt: skip
_CITEULIKE = _Source("citeulike-a (Wang & Blei 2011)", ("citeulike-a",))


# ---------------------------------------------------------------------------- locating files
def data_home_candidates(data_home: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for data sets, in order: ``data_home``, ``$RECFORGE_DATA``, ``~/.cache/recforge``."""
    out = []
    if data_home is not None:
        out.append(Path(data_home).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env).expanduser())
    out.append(Path.home() / ".cache" / "recforge")
    seen, unique = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def _download_dir(data_home) -> Path:
    return Path(data_home).expanduser() if data_home is not None else Path.home() / ".cache" / "recforge"


def _find(source: _Source, filename: str, data_home=None, download: bool = False, progress: bool | None = None) -> Path:
    """Path of ``<folder>/<filename>`` in the first search folder holding it; download if allowed."""
    looked = []
    for base in data_home_candidates(data_home):
        for folder in source.folders:
            p = base / folder / filename
            looked.append(p)
            if p.is_file():
                return p
    where = "\n  ".join(str(p) for p in looked)
    dest = _download_dir(data_home)
    if not download or source.url is None:
        how = f", or pass download=True to fetch {source.url} into {dest}" if source.url is not None else ""
        raise FileNotFoundError(
            f"{source.name}: {source.folders[0]}/{filename} not found. Looked for:\n  {where}\n"
            f"Put the provider's files in a folder '{source.folders[0]}' under data_home, ${ENV_VAR} or "
            f"~/.cache/recforge{how}."
        )
    _download_and_unpack(source, filename, dest, show_progress(progress))
    p = dest / source.folders[0] / filename
    if not p.is_file():
        raise FileNotFoundError(f"{source.name}: downloaded {source.url} but it holds no {filename}")
    return p


# ---------------------------------------------------------------------------- downloading
def _fetch(url: str, dest: Path, progress: bool = True) -> None:
    """Stream ``url`` into ``dest``. Tests replace this function to stay offline."""
    import urllib.request

    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=not progress) as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download_and_unpack(source: _Source, filename: str, dest: Path, progress: bool) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / source.url.rsplit("/", 1)[-1]
    part = archive.with_name(archive.name + ".part")
    log.info("downloading %s from %s into %s", source.name, source.url, dest)
    try:
        _fetch(source.url, part, progress)
    except Exception as exc:  # offline, HTTP error, disk full: one clear message, no traceback chain
        part.unlink(missing_ok=True)
        raise FileNotFoundError(
            f"{source.name}: could not download {source.url} ({type(exc).__name__}: {exc}). "
            f"Download it yourself and unpack it so that {dest / source.folders[0] / filename} exists."
        ) from None
    digest = _sha256(part)
    if source.sha256 is None:
        log.warning("%s: no known checksum to check; the downloaded archive has sha256 %s", source.name, digest)
    elif digest != source.sha256:
        part.unlink(missing_ok=True)
        raise ValueError(
            f"{source.name}: checksum mismatch for {source.url}: expected sha256 {source.sha256}, got {digest}. "
            "The download is corrupt or the provider changed the file; it was deleted."
        )
    part.replace(archive)
    staging = dest / f".{source.folders[0]}.unpack"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _unpack(archive, staging)
        hits = sorted(staging.rglob(filename), key=lambda p: len(p.parts))
        if not hits:
            raise FileNotFoundError(f"{source.name}: {archive.name} holds no {filename}")
        target = dest / source.folders[0]
        target.mkdir(exist_ok=True)
        for f in hits[0].parent.iterdir():  # the folder holding the file, in the provider's layout
            if not (target / f.name).exists():
                shutil.move(str(f), str(target / f.name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink(missing_ok=True)


def _unpack(archive: Path, into: Path) -> None:
    into.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            root = into.resolve()
            for name in zf.namelist():  # refuse members escaping the folder ("zip slip")
                if not (root / name).resolve().is_relative_to(root):
                    raise ValueError(f"{archive.name}: unsafe member path {name!r}")
            zf.extractall(into)
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    else:
        raise ValueError(f"unknown archive type: {archive.name}")


# ---------------------------------------------------------------------------- readers
def _standard(df: pd.DataFrame, weight: str | None, time: str | None) -> pd.DataFrame:
    """user/item int64 (when numeric), weight float32, timestamp int64."""
    out = df.reset_index(drop=True)
    for col in ("user", "item"):
        if pd.api.types.is_integer_dtype(out[col]):
            out[col] = out[col].astype(np.int64)
    if weight is not None:
        out[weight] = out[weight].astype(np.float32)
    if time is not None:
        out[time] = out[time].astype(np.int64)
    return out


def _check_variant(variant, table: dict, what: str) -> None:
    if variant not in table:
        raise ValueError(f"{what} must be one of {sorted(table)}, got {variant!r}")


def load_movielens(
    variant: str = "100k", data_home=None, download: bool = False, progress: bool | None = None
) -> pd.DataFrame:
    """MovieLens ratings (GroupLens), read from the provider's own files.

    Parameters
    ----------
    variant : {"100k", "1m", "10m", "20m", "25m", "latest-small"}
        Files read: ``ml-100k/u.data`` (tab-separated), ``ml-1m/ratings.dat`` and
        ``ml-10M100K/ratings.dat`` (``::``-separated), ``ml-20m``, ``ml-25m`` and
        ``ml-latest-small`` ``/ratings.csv``.
    data_home : path, optional
        Searched first; downloads go there (default ``~/.cache/recforge``).
    download : bool
        Fetch the provider's zip (SHA-256 checked) when the file is absent.
    progress : bool, optional
        Download progress bar (None: ``recforge.get_config()["progress"]``).

    Returns
    -------
    pandas.DataFrame with columns ``user`` (int64), ``item`` (int64, the movie id),
    ``rating`` (float32) and ``timestamp`` (int64, unix seconds), one row per rating.
    """
    _check_variant(variant, _MOVIELENS, "variant")
    ratings, _, fmt = _MOVIELENS_FILES[variant]
    path = _find(_MOVIELENS[variant], ratings, data_home, download, progress)
    names = ["user", "item", "rating", "timestamp"]
    if fmt == "100k":
        df = pd.read_csv(path, sep="\t", header=None, names=names)
    elif fmt == "dat":
        # "u::i::r::t": splitting on ':' keeps pandas' fast C parser; fields 1, 3, 5 are empty.
        df = pd.read_csv(path, sep=":", header=None, usecols=[0, 2, 4, 6], engine="c")
        df.columns = names
    else:
        df = pd.read_csv(path, usecols=["userId", "movieId", "rating", "timestamp"])
        df = df.rename(columns={"userId": "user", "movieId": "item"})[names]
    return _standard(df, "rating", "timestamp")


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # ml-1m's movies.dat is latin-1
        return raw.decode("latin-1")


def _split_lines(path: Path, sep: str, n: int = -1) -> pd.DataFrame:
    """The non-empty lines of a text file split on ``sep`` (at most ``n`` splits), one column per field."""
    lines = pd.Series(_read_text(path).splitlines())
    return lines[lines.str.len() > 0].str.split(sep, n=n, expand=True)


def movielens_titles(
    variant: str = "100k", data_home=None, download: bool = False, progress: bool | None = None
) -> pd.Series:
    """Movie titles: a Series of str indexed by movie id (``item``), named ``title``.

    Reads ``u.item`` (latin-1, ``|``-separated), ``movies.dat`` (``::``-separated) or
    ``movies.csv`` depending on the variant.
    """
    ids, titles = _movies_field(variant, "title", data_home, download, progress)
    index = pd.Index(ids.astype(np.int64).to_numpy(), name="item")
    return pd.Series(titles.astype(str).to_numpy(), index=index, name="title")


def _movies_field(variant: str, field: str, data_home, download, progress):
    """(movie ids, the ``field`` ("title" | "genres") of each) from the variant's movies file.

    ML-100K's genres are its 19 flag columns (a DataFrame); elsewhere the field is one column of str.
    """
    _check_variant(variant, _MOVIELENS, "variant")
    _, movies, fmt = _MOVIELENS_FILES[variant]
    path = _find(_MOVIELENS[variant], movies, data_home, download, progress)
    if fmt == "100k":
        cols = [0, 1] if field == "title" else [0, *range(5, 5 + len(_ML100K_GENRES))]
        df = pd.read_csv(path, sep="|", header=None, usecols=cols, encoding="latin-1", quoting=csv.QUOTE_NONE)
        return df[0], df[1] if field == "title" else df.iloc[:, 1:]
    if fmt == "dat":
        parts = _split_lines(path, "::", n=2)
        return parts[0], parts[1 if field == "title" else 2]
    df = pd.read_csv(path, usecols=["movieId", field])
    return df["movieId"], df[field]


_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western")  # fmt: skip  # u.item's 19 genre flags, in column order (u.genre)


def movielens_genres(
    variant: str = "100k", data_home=None, download: bool = False, progress: bool | None = None
) -> pd.DataFrame:
    """Movie genres as a 0/1 matrix: a DataFrame indexed by movie id (``item``), one float32 column per genre.

    ML-100K: the 19 flags of ``u.item`` (``unknown`` included); the other variants: the ``|``-separated
    genres of ``movies.dat`` / ``movies.csv`` (``(no genres listed)`` gives a row of zeros). The
    columns are in the file's order (100K) or sorted (others). Feed it to the calibration
    re-ranker (``rf.rerank.calibrate``) or the miscalibration metric as the items' genres.
    """
    ids, genres = _movies_field(variant, "genres", data_home, download, progress)
    if isinstance(genres, pd.DataFrame):  # ML-100K: the flags themselves
        flags, names = genres.to_numpy(np.float32), list(_ML100K_GENRES)
    else:
        dummies = genres.astype(str).str.get_dummies(sep="|").drop(columns="(no genres listed)", errors="ignore")
        flags, names = dummies.to_numpy(np.float32), list(dummies.columns)
    index = pd.Index(ids.astype(np.int64).to_numpy(), name="item")
    return pd.DataFrame(flags, index=index, columns=names)


def movielens_users(
    variant: str = "100k", data_home=None, download: bool = False, progress: bool | None = None
) -> pd.DataFrame:
    """User demographics: a DataFrame indexed by user id (``user``) with ``age`` (int64), ``gender``
    ("F" / "M"), ``occupation`` and ``zip`` (str).

    Read from ``ml-100k/u.user`` or ``ml-1m/users.dat`` (where age is the start of an age band and
    occupation a numeric code, as the provider writes them); the other variants have no user data
    (ValueError). For per-group accuracy: ``rf.evaluation.evaluate_groups(..., groups=users["gender"])``.
    """
    # file, separator, the fields' order after the user id
    files = {"100k": ("u.user", "|", ("age", "gender")), "1m": ("users.dat", "::", ("gender", "age"))}
    _check_variant(variant, files, "variant (the variants with user demographics)")
    filename, sep, order = files[variant]
    path = _find(_MOVIELENS[variant], filename, data_home, download, progress)
    parts = _split_lines(path, sep)
    if parts.shape[1] != 5:
        raise ValueError(f"{path}: expected 5 {sep!r}-separated fields per line, got {parts.shape[1]}")
    field = {name: parts[1 + j] for j, name in enumerate(order)}
    return pd.DataFrame({
        "age": field["age"].astype(np.int64).to_numpy(),
        "gender": field["gender"].astype(str).to_numpy(),
        "occupation": parts[3].astype(str).to_numpy(),
        "zip": parts[4].astype(str).to_numpy(),
    }, index=pd.Index(parts[0].astype(np.int64).to_numpy(), name="user"))  # fmt: skip


def load_lastfm(
    variant: str = "2k", data_home=None, download: bool = False, progress: bool | None = None
) -> pd.DataFrame:
    """Last.fm listening counts.

    Parameters
    ----------
    variant : {"2k", "360k"}
        "2k": HetRec 2011 ``hetrec2011-lastfm-2k/user_artists.dat`` (tab-separated, header
        ``userID artistID weight``); user and item are int64 ids. "360k": Celma's
        ``lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv``; user is the sha1 string
        and item the artist *name* (the MusicBrainz id is missing for many rows); rows
        without a user or artist name are dropped.

    Returns
    -------
    pandas.DataFrame with columns ``user``, ``item``, ``weight`` (float32 play count).
    """
    _check_variant(variant, _LASTFM, "variant")
    source, filename = _LASTFM[variant]
    path = _find(source, filename, data_home, download, progress)
    if variant == "2k":
        df = pd.read_csv(path, sep="\t")
        df = df.rename(columns={"userID": "user", "artistID": "item"})[["user", "item", "weight"]]
    else:
        df = pd.read_csv(
            path,
            sep="\t",
            header=None,
            usecols=[0, 2, 3],
            names=["user", "mbid", "item", "weight"],
            quoting=csv.QUOTE_NONE,
            dtype={0: str, 2: str},
        )
        n = len(df)
        df = df.dropna(subset=["user", "item", "weight"])
        if len(df) < n:
            log.info("load_lastfm('360k'): dropped %d rows without user, artist name or count", n - len(df))
    return _standard(df, "weight", None)


def load_sasrec(name: str = "video-games", data_home=None) -> pd.DataFrame:
    """SASRec-format sequences (Kang & McAuley 2018): ``user item`` per line, time-ordered per user.

    Parameters
    ----------
    name : {"video-games"}
        "video-games": ``sasrec-amazon-video-games/Video.txt`` (Amazon Video Games).

    Returns
    -------
    pandas.DataFrame with columns ``user``, ``item`` (int64, 1-based as in the file) and
    ``timestamp`` (int64): the interaction's position in its user's sequence (0, 1, ...),
    so the file order is the time order.
    """
    _check_variant(name, _SASREC, "name")
    source, filename = _SASREC[name]
    path = _find(source, filename, data_home, download=False)
    df = pd.read_csv(path, sep=" ", header=None, names=["user", "item"])
    df["timestamp"] = df.groupby("user", sort=False).cumcount()
    return _standard(df, None, "timestamp")


def lastfm_artists(data_home=None, download: bool = False, progress: bool | None = None) -> pd.Series:
    """Last.fm 2K artist names: a Series of str indexed by artist id (``item``), named ``name``.

    Reads ``hetrec2011-lastfm-2k/artists.dat`` (tab-separated, header ``id name url pictureURL``).
    """
    source, _ = _LASTFM["2k"]
    path = _find(source, "artists.dat", data_home, download, progress)
    df = pd.read_csv(path, sep="\t", usecols=["id", "name"], quoting=csv.QUOTE_NONE, dtype={"name": str})
    return pd.Series(df["name"].to_numpy(), index=pd.Index(df["id"].astype(np.int64), name="item"), name="name")


def _read_sequences(path: Path) -> pd.DataFrame:
    """``user item_1 ... item_n`` lines (time-ordered items) as user, item, timestamp (position)."""
    users, items, positions = [], [], []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            seq = [int(x) for x in fields]
        except ValueError:
            raise ValueError(f"{path}, line {n}: expected integer ids, got {line[:60]!r}") from None
        users.extend([seq[0]] * (len(seq) - 1))
        items.extend(seq[1:])
        positions.extend(range(len(seq) - 1))
    df = pd.DataFrame({"user": np.asarray(users, np.int64), "item": np.asarray(items, np.int64),
                       "timestamp": np.asarray(positions, np.int64)})  # fmt: skip
    return _standard(df, None, "timestamp")


def load_s3rec(name: str = "beauty", data_home=None) -> pd.DataFrame:
    """The S3-Rec sequential sets (Zhou et al., CIKM 2020): Amazon Beauty / Sports / Toys, Yelp, LastFM.

    Parameters
    ----------
    name : {"beauty", "sports", "toys", "yelp", "lastfm"}
        Reads ``s3rec-sequential/<Beauty|Sports_and_Outdoors|Toys_and_Games|Yelp|LastFM>.txt``: one
        user per line, ``user item_1 ... item_n`` with 1-based ids, items in time order.

    Returns
    -------
    pandas.DataFrame with columns ``user``, ``item`` (int64, as in the file) and ``timestamp``
    (int64): the item's position in its user's sequence (0, 1, ...). The paper's protocol holds
    out each user's last item for test and the one before for validation: ``split.leave_last_out``.
    """
    _check_variant(name, _S3REC, "name")
    return _read_sequences(_find(_S3REC_SOURCE, _S3REC[name], data_home))


def load_citeulike(data_home=None) -> pd.DataFrame:
    """citeulike-a (Wang & Blei 2011): users' libraries of scientific articles, implicit feedback.

    Reads ``citeulike-a/users.dat``: line ``u`` (0-based) is user ``u``, ``n item_1 ... item_n``
    with 0-based article ids.

    Returns
    -------
    pandas.DataFrame with columns ``user`` and ``item`` (int64), one row per (user, article).
    """
    path = _find(_CITEULIKE, "users.dat", data_home)
    users, items = [], []
    for u, line in enumerate(_read_text(path).splitlines()):
        fields = [int(x) for x in line.split()]
        if not fields or fields[0] != len(fields) - 1:
            raise ValueError(f"{path}, line {u + 1}: the count {fields[:1]} does not match the {len(fields) - 1} ids")
        users.extend([u] * fields[0])
        items.extend(fields[1:])
    return pd.DataFrame({"user": np.asarray(users, np.int64), "item": np.asarray(items, np.int64)})


# ---------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the registry: ``load(name)`` reads it, ``item_names(name)`` names its items."""

    name: str
    description: str
    feedback: str  # "ratings" (a rating column), "counts" (a weight column of play counts) or "implicit"
    reader: Callable  # (data_home, download, progress) -> DataFrame
    namer: Callable | None = None  # (data_home, download, progress) -> Series of names by item id
    downloadable: bool = False


def _registry() -> dict[str, DatasetInfo]:
    out = {}
    for variant in _MOVIELENS:
        out[f"ml-{variant}"] = DatasetInfo(
            f"ml-{variant}",
            f"{_MOVIELENS[variant].name} (GroupLens): ratings with timestamps; titles",
            "ratings",
            lambda h, d, p, v=variant: load_movielens(v, h, d, p),
            lambda h, d, p, v=variant: movielens_titles(v, h, d, p),
            downloadable=True,
        )
    out["lastfm-2k"] = DatasetInfo(
        "lastfm-2k", "HetRec 2011 Last.fm 2K: artist play counts; artist names", "counts",
        lambda h, d, p: load_lastfm("2k", h, d, p), lastfm_artists, downloadable=True,
    )  # fmt: skip
    out["lastfm-360k"] = DatasetInfo(
        "lastfm-360k", "Last.fm 360K (Celma): artist play counts; the items are artist names", "counts",
        lambda h, d, p: load_lastfm("360k", h, d, p), downloadable=True,
    )  # fmt: skip
    out["sasrec-video-games"] = DatasetInfo(
        "sasrec-video-games", "SASRec Amazon Video Games: time-ordered sequences", "implicit",
        lambda h, d, p: load_sasrec("video-games", h),
    )  # fmt: skip
    for key, filename in _S3REC.items():
        out[f"s3rec-{key}"] = DatasetInfo(
            f"s3rec-{key}", f"S3-Rec {filename[:-4]}: time-ordered sequences", "implicit",
            lambda h, d, p, k=key: load_s3rec(k, h),
        )  # fmt: skip
    out["citeulike-a"] = DatasetInfo(
        "citeulike-a", "citeulike-a: users' article libraries", "implicit", lambda h, d, p: load_citeulike(h)
    )
    out["synthetic"] = DatasetInfo(
        "synthetic", "synthetic ratings with planted structure (2000 users x 1000 items, seed 0)", "ratings",
        lambda h, d, p: synthetic(n_users=2000, n_items=1000, nnz=100_000, seed=0),
    )  # fmt: skip
    return out


_DATASETS = _registry()


def names() -> list[str]:
    """The registered data set names, one spelling each (``load(name)``, ``recforge --dataset NAME``)."""
    return list(_DATASETS)


def info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; ValueError (with the closest names) for an unknown one."""
    if name not in _DATASETS:
        import difflib

        close = difflib.get_close_matches(str(name), _DATASETS, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown data set {name!r}{hint}; known: {', '.join(_DATASETS)}")
    return _DATASETS[name]


def load(name: str, data_home=None, download: bool = False, progress: bool | None = None) -> pd.DataFrame:
    """Read the registered data set ``name`` (see ``names()``) as a DataFrame.

    Columns: ``user``, ``item``, then ``rating`` (feedback "ratings"), ``weight`` (play counts,
    feedback "counts") and ``timestamp`` where the set has them. ``download=True`` fetches the sets
    that have a known source (``info(name).downloadable``) when their files are absent.
    """
    entry = info(name)
    if download and not entry.downloadable:
        log.info("%s has no download source: its files must be in place", name)
    return entry.reader(data_home, download, progress)


def item_names(name: str, data_home=None, download: bool = False, progress: bool | None = None) -> pd.Series | None:
    """Readable names of the items of ``name`` (a Series indexed by item id), or None where the set has none.

    MovieLens: titles; Last.fm 2K: artist names. A names file that cannot be found is None too.
    """
    entry = info(name)
    if entry.namer is None:
        return None
    try:
        return entry.namer(data_home, download, progress)
    except (FileNotFoundError, ValueError) as exc:
        log.info("%s: no item names (%s)", name, exc)
        return None


def _resolve(rel: str, data_home) -> tuple[Path | None, list[Path]]:
    looked = []
    if Path(rel).is_absolute():
        p = Path(rel)
        return (p if p.is_file() else None), [p]
    for base in data_home_candidates(data_home):
        p = base / rel
        looked.append(p)
        if p.is_file():
            return p, looked
    return None, looked


def load_ncf_format(prefix: str, data_home=None) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Leave-one-out data in the NCF format (He et al. 2017), e.g. ``"deepcf/lastfm"``, ``"ncf/ml-1m"``.

    Reads ``<prefix>.train.rating`` and ``<prefix>.test.rating`` (tab-separated, no header:
    ``user item rating [timestamp]``, 0-based ids) and ``<prefix>.test.negative`` (one line per
    test row: ``(user,item)`` then the sampled negative item ids).

    Returns
    -------
    train : pandas.DataFrame, columns ``user``, ``item`` (int64), ``rating`` (float32)[, ``timestamp``]
    test : pandas.DataFrame, same columns, one row per test user
    negatives : int64 ndarray of shape (len(test), n_negatives), usually 99 per row;
        row ``j`` belongs to ``test.iloc[j]``.

    Notes
    -----
    The negatives are returned as published. Those of the DeepCF files are not all unseen:
    ``deepcf/lastfm`` has 2,434 of its 172,359 negatives among the user's training items and
    86 equal to the test item (AMusic 348 and 18, AToy 227 and 12).
    """
    found, missing = {}, []
    for part in ("train.rating", "test.rating", "test.negative"):
        p, looked = _resolve(f"{prefix}.{part}", data_home)
        if p is None:
            missing.extend(looked)
        found[part] = p
    if missing:
        where = "\n  ".join(str(p) for p in missing)
        raise FileNotFoundError(
            f"NCF-format data {prefix!r}: files not found. Looked for:\n  {where}\n"
            f"Put {prefix}.train.rating, .test.rating and .test.negative under data_home, ${ENV_VAR} "
            "or ~/.cache/recforge."
        )
    train = _read_rating_file(found["train.rating"])
    test = _read_rating_file(found["test.rating"])
    neg = pd.read_csv(found["test.negative"], sep="\t", header=None)
    neg = neg.dropna(axis=1, how="all")  # a trailing tab makes an empty last column
    pairs = neg[0].astype(str).str.strip("()").str.split(",", expand=True)
    if pairs.shape[1] != 2:
        raise ValueError(f"{found['test.negative']}: first column must be '(user,item)'")
    values = neg.iloc[:, 1:]
    if values.isna().to_numpy().any():
        raise ValueError(f"{found['test.negative']}: rows have different numbers of negatives")
    negatives = values.to_numpy(dtype=np.int64)
    if len(negatives) != len(test) or not (
        np.array_equal(pairs[0].astype(np.int64).to_numpy(), test["user"].to_numpy())
        and np.array_equal(pairs[1].astype(np.int64).to_numpy(), test["item"].to_numpy())
    ):
        raise ValueError(f"{found['test.negative']} does not match {found['test.rating']} row for row")
    return train, test, negatives


def _read_rating_file(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", header=None)
    if df.shape[1] not in (3, 4):
        raise ValueError(
            f"{path}: expected 3 or 4 tab-separated columns (user item rating [timestamp]), got {df.shape[1]}"
        )
    df.columns = ["user", "item", "rating", "timestamp"][: df.shape[1]]
    return _standard(df, "rating", "timestamp" if df.shape[1] == 4 else None)


def _select(df: pd.DataFrame, path, user_col, item_col, weight_col, time_col) -> pd.DataFrame:
    cols = {user_col: "user", item_col: "item"}
    if weight_col is not None:
        cols[weight_col] = "weight"
    if time_col is not None:
        cols[time_col] = "timestamp"
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: column(s) {absent} not found (columns: {list(df.columns)})")
    return df[list(cols)].rename(columns=cols).reset_index(drop=True)


def load_csv(
    path,
    user_col: str = "user",
    item_col: str = "item",
    weight_col: str | None = None,
    time_col: str | None = None,
    **read_csv_kwargs,
) -> pd.DataFrame:
    """Any delimited file through :func:`pandas.read_csv`, reduced to the standard columns.

    Returns a DataFrame with columns ``user``, ``item`` and, when their source columns are
    named, ``weight`` and ``timestamp``. Extra keyword arguments go to ``pandas.read_csv``
    (``sep``, ``header``, ``names``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return _select(pd.read_csv(path, **read_csv_kwargs), path, user_col, item_col, weight_col, time_col)


def load_parquet(
    path,
    user_col: str = "user",
    item_col: str = "item",
    weight_col: str | None = None,
    time_col: str | None = None,
    **read_parquet_kwargs,
) -> pd.DataFrame:
    """A Parquet file through :func:`pandas.read_parquet` (needs pyarrow or fastparquet); see :func:`load_csv`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    return _select(pd.read_parquet(path, **read_parquet_kwargs), path, user_col, item_col, weight_col, time_col)
