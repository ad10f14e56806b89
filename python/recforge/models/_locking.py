"""The thread-safety contract of the models (README, "Limits, Ctrl-C and threads").

Each model has a readers-writer lock. The mutators (fit, fold-in, forget, ``to``) hold it exclusively, so
they are atomic for other threads: a reader (recommend, score, save, ...) sees the state before or
after them, never a mix, and two fits of one model run one after the other. Readers share it
(concurrent recommends run in parallel, their kernels release the GIL). The mutating thread may
also read (a fit callback evaluates the model), but a callback must not wait for another thread
that uses the same model (that thread waits for the fit: a deadlock). A failed mutator restores
the model's attributes as they were, so a failed refit keeps the old fitted model.
"""

from __future__ import annotations

import contextlib
import functools
import threading

__all__ = ["ModelLock", "lock_public_methods"]

_MUTATORS = ("fit", "partial_fit_users", "partial_fit_items", "partial_fit_users_external",
             "partial_fit_items_external", "to", "add_items", "forget_users", "forget_items")  # fmt: skip
_READERS = ("recommend", "recommend_all", "recommend_for_rows", "recommend_external", "score_external",
            "rows_from_items", "recalculate_user", "rerank", "score", "predict", "save", "similar_items",
            "similar_users", "recommend_for_features", "item_factors_for", "similar_items_by_features",
            "feature_encoder", "explain", "explain_external")  # fmt: skip


class ModelLock:
    """Readers share; a writer excludes everyone else and may re-enter, and read, itself.

    A waiting writer goes first: new readers wait for it, so a stream of overlapping readers cannot
    starve a fit or a streaming update (``recforge.online``). A thread that already reads may read
    again (a reader calling another reader) without waiting, as the writer cannot start meanwhile.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None  # thread id of the writer
        self._depth = 0  # the writer's nesting
        self._writers_waiting = 0
        self._reading = threading.local()  # per thread: how many read holds it has

    @contextlib.contextmanager
    def read(self):
        me = threading.get_ident()
        with self._cond:
            counted = self._writer != me  # the writer reads its own state without counting
            if counted:
                if not getattr(self._reading, "depth", 0):  # a nested read must not wait: the writer waits for it
                    self._cond.wait_for(lambda: self._writer is None and self._writers_waiting == 0)
                self._readers += 1
                self._reading.depth = getattr(self._reading, "depth", 0) + 1
        try:
            yield
        finally:
            if counted:
                with self._cond:
                    self._readers -= 1
                    self._reading.depth -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    @contextlib.contextmanager
    def write(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer != me:
                self._writers_waiting += 1
                try:
                    self._cond.wait_for(lambda: self._writer is None and self._readers == 0)
                finally:
                    self._writers_waiting -= 1
                    self._cond.notify_all()  # readers held back for this writer recheck (an interrupted wait too)
                self._writer = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._writer = None
                    self._cond.notify_all()


def _locked(method, mutator: bool):
    """``method`` run under the model's lock (exclusive for a mutator, which restores the attributes on failure)."""

    @functools.wraps(method)
    def run_locked(self, *args, **kwargs):
        lock = self._model_lock()
        if not mutator:
            with lock.read():
                return method(self, *args, **kwargs)
        with lock.write():
            before = dict(self.__dict__)  # shallow: fits and fold-ins replace arrays, never edit the old ones
            try:
                return method(self, *args, **kwargs)
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(before)
                raise

    run_locked.__recforge_locked__ = True
    return run_locked


def lock_public_methods(cls) -> None:
    """Wrap the public methods ``cls`` defines itself (see ``_MUTATORS`` / ``_READERS``) in ``_locked``."""
    for name in _MUTATORS + _READERS:
        method = cls.__dict__.get(name)
        if callable(method) and not getattr(method, "__recforge_locked__", False):
            setattr(cls, name, _locked(method, mutator=name in _MUTATORS))
