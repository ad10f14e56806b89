"""Evaluation: ranking metrics, rating metrics, beyond-accuracy metrics and evaluation protocols.

>>> import recforge as rf
>>> rf.evaluation.evaluate(model, train, test, k=10)                       # full-catalogue ranking
>>> rf.evaluation.evaluate(model, train, test, k=10, protocol="sampled")   # NCF protocol (1 + 100)
>>> rf.evaluation.ndcg_at_k(recommended_ids, test_csr, k=10)
>>> rf.evaluation.compare({"ALS": rf.ALS(), "BPR": rf.BPR()}, train, test, chart="compare.png")  # paired CIs

Every metric states its exact definition in its docstring; ``recforge.evaluation.ranking``
defines the conventions shared by the ranking metrics (binary relevance, -1 padding, averaging
over users with test items).
"""

from __future__ import annotations

from .beyond import coverage, intra_list_diversity, novelty
from .compare import compare, plot_comparison
from .protocols import evaluate, sample_negatives, test_pairs
from .ranking import auc, hit_rate_at_k, map_at_k, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k
from .rating import mae, rmse

__all__ = [
    "auc",
    "compare",
    "coverage",
    "evaluate",
    "hit_rate_at_k",
    "intra_list_diversity",
    "mae",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "plot_comparison",
    "precision_at_k",
    "recall_at_k",
    "rmse",
    "sample_negatives",
    "test_pairs",
]
