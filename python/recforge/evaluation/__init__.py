"""Evaluation: ranking metrics, rating metrics, beyond-accuracy metrics and evaluation protocols.

>>> import recforge as rf
>>> rf.evaluation.evaluate(model, train, test, k=10)                       # full-catalogue ranking
>>> rf.evaluation.evaluate(model, train, test, k=10, protocol="sampled")   # NCF protocol (1 + 100)
>>> rf.evaluation.ndcg_at_k(recommended_ids, test_csr, k=10)

Every metric states its exact definition in its docstring; ``recforge.evaluation.ranking``
defines the conventions shared by the ranking metrics (binary relevance, -1 padding, averaging
over users with test items).
"""

from __future__ import annotations

from .beyond import coverage, intra_list_diversity, novelty
from .protocols import evaluate, sample_negatives, test_pairs
from .ranking import auc, hit_rate_at_k, map_at_k, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k
from .rating import mae, rmse

__all__ = [
    "auc",
    "coverage",
    "evaluate",
    "hit_rate_at_k",
    "intra_list_diversity",
    "mae",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
    "rmse",
    "sample_negatives",
    "test_pairs",
]
