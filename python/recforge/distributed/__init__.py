"""Scale-out on Dask: ALS, batch recommendation and evaluation across the workers of a cluster.

Needs the ``dask`` extra (``pip install "recforge[dask]"``: dask.distributed, dask.dataframe and
pyarrow for Parquet). Every function takes a ``distributed.Client``; the results are ordinary
recforge objects (``fit`` returns a ``recforge.ALS``). See docs/scale-out.md.

>>> from distributed import Client, LocalCluster
>>> import recforge as rf
>>> import dask
>>> with dask.config.set(rf.distributed.CLUSTER_CONFIG):  # leaner diagnostics (optional)
...     client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
>>> model = rf.distributed.ALS(factors=64, epochs=10).fit(client, ["part-0.parquet", "part-1.pq"])  # doctest: +SKIP
>>> rf.distributed.recommend_all(model, client, "recs/", k=10)  # doctest: +SKIP

(Skipped by the doctest run: they need a cluster and Parquet files; tests/test_distributed.py runs them.)
"""

from __future__ import annotations

try:
    import dask.dataframe  # noqa: F401
    import distributed  # noqa: F401
except ImportError as exc:  # the optional extra is absent
    raise ImportError(
        "recforge.distributed needs Dask: install the 'dask' extra, pip install \"recforge[dask]\""
        f" (dask[distributed,dataframe] and pyarrow); the import failed with: {exc}"
    ) from exc

from ._client import CLUSTER_CONFIG
from .als import ALS
from .batch import evaluate, recommend_all
from .data import DistributedInteractions, distribute

__all__ = ["ALS", "CLUSTER_CONFIG", "DistributedInteractions", "distribute", "evaluate", "recommend_all"]
