"""The one training driver: epochs, timing, progress bar, callback and ``history_`` for every model.

A model's ``fit`` supplies ``run_epoch(epoch) -> (loss, extra, stop)``: ``loss`` is the epoch's
training loss (a float, or None when the model does not compute one), ``extra`` a dict of further
per-epoch numbers recorded in ``history_`` (e.g. ``val_rmse``), ``stop`` ends training early.
The callback sees ``(epoch, seconds_this_epoch, loss)`` with that meaning in every model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tqdm.auto import tqdm

from .._config import show_progress

__all__ = ["TrainingDiverged", "run_epochs"]


class TrainingDiverged(FloatingPointError, ValueError):
    """Training produced NaN or inf (too large lr, values or regularisation).

    A FloatingPointError (as before) and a ValueError (the project's rule for bad input): the
    message names the parameters or inputs to change.
    """


log = logging.getLogger("recforge.models")


def run_epochs(
    model,
    n_epochs: int,
    run_epoch: Callable[[int], tuple],
    *,
    callback: Callable | None = None,
    progress: bool | None = None,
    desc: str,
    record: bool = True,
) -> list[dict]:
    """Run ``run_epoch`` for epochs ``0 .. n_epochs-1`` (fewer if it asks to stop); return the history.

    Parameters
    ----------
    model : Recommender
        With ``record``, its ``history_`` is reset and grows epoch by epoch (so a callback can read
        it); its cached ranking vectors are dropped after each epoch (the factors moved).
    callback : callable(epoch, seconds_this_epoch, loss), optional
    progress : bool, optional
        None: the package-wide setting (``recforge.set_config(progress=...)``).
    record : bool
        False for fold-in passes, which must not replace the fit's ``history_``.
    """
    history: list[dict] = []
    if record:
        model.history_ = history
    bar = tqdm(range(n_epochs), desc=desc, unit="epoch", disable=not show_progress(progress), leave=False)
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            loss, extra, stop = run_epoch(epoch)
            seconds = time.perf_counter() - t0
            loss = None if loss is None else float(loss)
            history.append({"epoch": epoch, "seconds": seconds, "loss": loss, **extra})
            model._invalidate()
            log.debug("%s epoch %d: loss %s (%.3fs) %s", desc, epoch, loss, seconds, extra)
            if loss is not None or extra:
                shown = {"loss": loss, **extra}
                bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if isinstance(v, float)})
            if callback is not None:
                callback(epoch, seconds, loss)
            if stop:
                break
    finally:
        bar.close()
    return history
