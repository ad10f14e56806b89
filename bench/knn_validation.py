"""Choosing ItemKNN's TF-IDF idf formula on validation splits (never the bench's test split).

The bench's data (bench_knn.splits: ML-100K ratings >= 4, Last.fm-2K play counts, per-user 20%
holdout, seed 42); its *training* part is split again per user 80/20 (seeds 0, 1, 2) and
``rf.ItemKNN(similarity="tfidf", idf=...)`` is fitted on the inner training part and scored on the
validation part: NDCG@10, full catalogue, training items excluded, zero-score items dropped (as the
bench). Also, for reference, cosine and BM25 with the same protocol (no idf choice there).

Run: ``RECFORGE_DATA=... python bench/knn_validation.py`` (about a minute; prints a Markdown table).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_knn  # noqa: E402

SEEDS = (0, 1, 2)
CONFIGS = [("cosine", None), ("bm25", None), ("tfidf", "smooth"), ("tfidf", "plain")]


class _Context:
    """The two things bench_knn.splits asks of the harness's context."""

    def dataset(self, name, loader, *args, **kwargs):
        return loader(*args, **kwargs)


def main() -> None:
    import recforge as rf

    print("| data | similarity | idf | K | NDCG@10 (mean of seeds 0-2) | per seed |")
    print("|---|---|---|---:|---:|---|")
    for data_name, (train, _test) in bench_knn.splits(_Context()).items():
        inner = [rf.split.random_holdout(rf.Interactions(train), test_fraction=0.2, seed=s) for s in SEEDS]
        for similarity, idf in CONFIGS:
            for k in (20, 100):
                scores = []
                for fit_part, validation in inner:
                    params = {"idf": idf} if idf else {}
                    model = rf.ItemKNN(neighbors=k, similarity=similarity, threads=2, **params).fit(fit_part.csr)
                    ids, s = model.recommend(np.arange(fit_part.shape[0]), k=10, threads=2)
                    scores.append(bench_knn._ndcg(ids, s, validation.csr))
                per_seed = ", ".join(f"{x:.4f}" for x in scores)
                print(f"| {data_name} | {similarity} | {idf or '-'} | {k} | {np.mean(scores):.4f} | {per_seed} |")


if __name__ == "__main__":
    main()
