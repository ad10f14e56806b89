"""GPU ops: the same names as ``cpu.py``; the kernels arrive with issues 12/13.

``get_ops("cuda")`` only returns this module once CuPy, a visible GPU and a CUDA build are present
(``_backend.resolve_device`` explains what is missing otherwise). Until the kernels land, every
function raises NotImplementedError naming itself, so a model on ``device="cuda"`` fails clearly
at its first kernel call instead of silently falling back to the CPU.
"""

from __future__ import annotations

__all__ = [
    "als_explicit_half_step", "als_explicit_sse", "als_implicit_half_step", "als_implicit_loss", "csr",
    "ease_weights", "gram", "hybrid_epoch", "knn_item_neighbours", "knn_recommend", "mlp_arch", "mlp_sample_epoch",
    "mlp_score_all", "mlp_score_pairs", "mlp_train_epoch", "sgd_mf_epoch", "sgd_mf_predict", "sgd_positives",
    "sgd_rank_epoch", "sgd_ratings", "sgd_sample_negatives", "topk",
]  # fmt: skip

name = "cuda"


def __getattr__(attr: str):
    if attr == "xp":  # imported lazily: importing recforge must not need CuPy
        import cupy

        return cupy
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _not_yet(fn_name: str):
    def missing(*args, **kwargs):
        raise NotImplementedError(
            f"recforge has no GPU kernel for {fn_name} yet (GPU kernels arrive with issues 12/13): use device='cpu'"
        )

    missing.__name__ = missing.__qualname__ = fn_name
    missing.__doc__ = f"GPU twin of ``cpu.{fn_name}`` (not implemented yet: raises NotImplementedError)."
    return missing


csr = _not_yet("csr")
gram = _not_yet("gram")
als_implicit_half_step = _not_yet("als_implicit_half_step")
als_explicit_half_step = _not_yet("als_explicit_half_step")
als_implicit_loss = _not_yet("als_implicit_loss")
als_explicit_sse = _not_yet("als_explicit_sse")
sgd_ratings = _not_yet("sgd_ratings")
sgd_positives = _not_yet("sgd_positives")
sgd_mf_epoch = _not_yet("sgd_mf_epoch")
sgd_mf_predict = _not_yet("sgd_mf_predict")
sgd_rank_epoch = _not_yet("sgd_rank_epoch")
sgd_sample_negatives = _not_yet("sgd_sample_negatives")
mlp_arch = _not_yet("mlp_arch")
mlp_train_epoch = _not_yet("mlp_train_epoch")
mlp_sample_epoch = _not_yet("mlp_sample_epoch")
mlp_score_pairs = _not_yet("mlp_score_pairs")
mlp_score_all = _not_yet("mlp_score_all")
topk = _not_yet("topk")
ease_weights = _not_yet("ease_weights")
hybrid_epoch = _not_yet("hybrid_epoch")
knn_item_neighbours = _not_yet("knn_item_neighbours")
knn_recommend = _not_yet("knn_recommend")
