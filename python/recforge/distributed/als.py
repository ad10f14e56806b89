"""ALS on a Dask cluster: the local model's half-steps, one task per block, the same model out.

Per iteration (see docs/scale-out.md for the numbers at scale):

* user half-step: the item side (factors, and biases for explicit ALS) reaches the user blocks
  either whole (concatenated once per worker, ``routing="whole"``) or as only the rows each block reads
  (``routing="rows"``, Spark's and oneDAL's scheme: block b receives the rows of item block c that
  its columns name); implicit ALS gets the Gram ``YᵀY`` per half-step: one SYRK of the whole
  side in the first scheme (the local fit's own call, so the result equals the local fit bit for
  bit), the sum of per-block partial Grams in the second (equal up to float32 rounding: the sum
  runs in another order);
* one task per user block runs ``ops.als_*_half_step`` (the C++ kernel, GIL released) on the
  block's CSR, warm-starting CG from the block's previous factors; where every worker holds one
  block (the default) and the side comes whole, that task also concatenates the side and takes
  its Gram (fewer tasks: Dask costs ~3 ms of CPU per task);
* the item half-step mirrors it with the item blocks (rows of the transpose).

Rows are independent in the kernel and the initial factors are drawn from the local fit's random
stream block after block, so at ``routing="whole"`` the result equals ``recforge.ALS`` fitted on
the same data with the same seed, bit for bit.

Reliability: every task has ``retries``; blocks are task outputs with their lineage back to the
input, so a lost worker's blocks are recomputed (the result is unchanged: every task is a pure
function). With ``checkpoint_dir`` the factors are written every ``checkpoint_every`` iterations
(on a file system every worker sees); the next iterations read them back from the files, which
also cuts the lineage a recomputation would walk. If the scheduler (or the client) dies, the
futures are gone: run the fit again with ``resume=True`` and it continues from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

import numpy as np
from tqdm.auto import tqdm

from .._config import show_progress
from ..models import ALS as LocalALS
from ..models._params import Param, ParamsMixin
from . import _tasks
from ._client import check_workers, placement, submit, wait_all
from .data import DistributedInteractions, distribute

__all__ = ["ALS"]

log = logging.getLogger(__name__)

_MODEL_PARAMS = ("factors", "regularization", "epochs", "alpha", "solver", "cg_steps", "alpha0", "nu",
                 "regularization_scaling", "feedback", "clip", "threads", "seed")  # fmt: skip
_MANIFEST = "manifest.json"
# init="auto" draws the local fit's exact stream (a sequential chain of tasks) up to this many
# initial values (2^28: 1 GiB of factors, a few seconds of drawing), one stream per block above.
_EXACT_INIT_LIMIT = 1 << 28


class ALS(ParamsMixin):
    """Alternating least squares on a Dask cluster; ``fit`` returns an ordinary ``recforge.ALS``.

    The model parameters are those of ``recforge.ALS`` (same names, defaults and meaning; ``threads``
    is per task, 0 = the worker's thread count; ``device="cuda"`` runs every block's half-step on its
    worker's GPU, the GPU ALS of ``device="cuda"`` fits, with the blocks copied to the GPU and the new
    factors back per task; every worker needs a GPU and CuPy, e.g. dask-cuda's ``LocalCUDACluster``;
    the Gram and the loss stay on the CPU; the returned model is on the host). The others:

    Parameters
    ----------
    routing : {"auto", "whole", "rows"}
        How the other side's factors reach the blocks: "whole" sends the whole side (concatenated
        once per worker and half-step, read by the worker's blocks; where a worker holds one block,
        within that block's task), "rows" sends each block only the rows it reads.
        "auto": "whole" while a side is at most ``whole_limit_bytes``, else "rows". "rows" cannot
        take ``nu > 0`` with ``regularization_scaling="all_pairs"`` and ``alpha0 > 0`` (that
        regularisation counts the columns the kernel is given); ALS-WR (``"observed"``) routes by rows.
    whole_limit_bytes : int
        Size of one side's factors up to which "auto" routes it whole (default 256 MiB).
    user_blocks, item_blocks : int, optional
        Blocks per side (default: one per worker).
    checkpoint_dir : str, optional
        Folder (seen by every worker) for the factor checkpoints; None: no checkpoints.
    checkpoint_every : int >= 1
        Iterations between checkpoints (the last iteration is always written).
    retries : int >= 0
        Retries of each task (a worker lost while running it).
    init : {"auto", "exact", "per_block"}
        Initial factors. "exact": ``recforge.ALS``'s own random stream (users, then items), drawn
        block after block by a chain of tasks, so the fit equals the local one; the chain is
        sequential (about 10^8 values per second). "per_block": one stream per block seeded by
        (seed, side, block), drawn in parallel (the same distribution, other numbers). "auto":
        "exact" up to 2^28 initial values (e.g. 2M rows at f=128), "per_block" above.

    Attributes (after ``fit``)
    --------------------------
    data_ : DistributedInteractions, the blocked training data on the cluster
    routing_ : dict, the scheme used per side: {"users": ..., "items": ...}
    init_ : str, the initialisation used ("exact" or "per_block"; "restored" after a resume)
    history_ : list of dict (epoch, seconds, loss) per iteration
    """

    _param_spec = {
        **{name: p for name, p in LocalALS._param_spec.items() if name != "feature_weight"},  # no side features here
        "routing": Param("choice", choices=("auto", "whole", "rows")),
        "whole_limit_bytes": Param("int", low=0),
        "user_blocks": Param("int", low=1, optional=True),
        "item_blocks": Param("int", low=1, optional=True),
        "checkpoint_every": Param("int", low=1),
        "retries": Param("int", low=0),
        "init": Param("choice", choices=("auto", "exact", "per_block")),
    }
    _aliases = LocalALS._aliases

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        epochs: int = 15,
        alpha: float = 1.0,
        solver: str = "cg",
        cg_steps: int = 3,
        alpha0: float = 1.0,
        nu: float = 0.0,
        regularization_scaling: str = "all_pairs",
        feedback: str = "implicit",
        clip=True,
        device: str = "cpu",
        threads: int = 0,
        seed: int = 42,
        calculate_loss: bool = False,
        routing: str = "auto",
        whole_limit_bytes: int = 256 << 20,
        user_blocks: int | None = None,
        item_blocks: int | None = None,
        checkpoint_dir=None,
        checkpoint_every: int = 5,
        retries: int = 2,
        init: str = "auto",
        **deprecated,
    ):
        self._store_params(locals())

    def _invalidate(self) -> None:  # run-epochs protocol: nothing cached here
        pass

    def _check(self) -> None:
        self._validate_params()
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise TypeError(f"checkpoint_dir must be a path or None, got {type(self.checkpoint_dir).__name__}")
        if self.routing == "rows" and self._regularization_counts_columns():
            raise ValueError("routing='rows' needs nu=0, alpha0=0 or regularization_scaling='observed' (with "
                             "'all_pairs' the kernel's regularisation counts the columns it is given)")  # fmt: skip

    def _regularization_counts_columns(self) -> bool:
        """Whether lambda_u depends on the other side's size (all_pairs with nu > 0 and alpha0 > 0): such a
        side cannot be routed by rows (a block's kernel call sees only the columns it reads)."""
        return self.nu != 0 and self.alpha0 != 0 and self.regularization_scaling == "all_pairs"

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, client, data, callback=None, progress: bool | None = None, resume: bool = False, **data_options):
        """Fit on ``data`` with the cluster of ``client``; returns a fitted ``recforge.ALS``.

        Parameters
        ----------
        client : distributed.Client
        data : dask DataFrame, list of Parquet/CSV paths, Interactions or DistributedInteractions
            See ``recforge.distributed.distribute``; ``data_options`` (``user_col``, ``item_col``,
            ``weight_col``, ``duplicates``, ...) go to it.
        callback : callable(epoch, seconds_this_epoch, loss), optional
            Called on the client after every iteration (loss: None unless ``calculate_loss``; it
            then equals the local fit's up to the order of a float64 sum).
        progress : bool, optional
            tqdm bar over the iterations (None: ``recforge.get_config()["progress"]``).
        resume : bool
            Continue from the checkpoint in ``checkpoint_dir`` when there is one (it must come from
            the same parameters and data; ValueError otherwise). Without ``user_blocks`` /
            ``item_blocks`` the checkpoint's block counts are used, so a cluster of another size
            can resume it.

        Returns
        -------
        recforge.ALS
            Fitted (``from_factors``): ``seen_`` is the training matrix, ``history_`` the
            iterations run here; ``user_ids`` / ``item_ids`` hold the id maps.
        """
        self._check()
        if self.device == "cuda":
            check_workers(client, "cuda")
        resuming = resume and self.checkpoint_dir is not None
        blocks = (self.user_blocks, self.item_blocks)
        if resuming:  # the checkpoint's block layout, unless given: a new cluster may have another size
            found = submit(client, _read_manifest, f"{self.checkpoint_dir}/{_MANIFEST}",
                           key=f"rf-als-manifest-{uuid.uuid4().hex[:8]}", retries=self.retries).result()  # fmt: skip
            if found is not None:
                layout = (len(found.get("user_starts", [0])) - 1, len(found.get("item_starts", [0])) - 1)
                blocks = tuple(given or max(1, n) for given, n in zip(blocks, layout))
        data = distribute(client, data, user_blocks=blocks[0], item_blocks=blocks[1], retries=self.retries,
                          **data_options)  # fmt: skip
        self.data_ = data
        run = _Run(self, client, data)
        start = run.restore() if resuming else None
        if start is None:
            run.initialise()
            start = 0
        self.init_ = getattr(run, "init_", "restored")
        history = self.history_ = []
        bar = tqdm(range(start, self.epochs), desc="ALS (dask)", unit="epoch", disable=not show_progress(progress),
                   leave=False)  # fmt: skip
        try:
            for epoch in bar:
                t0 = time.perf_counter()
                loss = run.iteration(epoch)
                seconds = time.perf_counter() - t0
                history.append({"epoch": epoch, "seconds": seconds, "loss": loss})
                log.debug("ALS (dask) epoch %d: loss %s (%.3fs)", epoch, loss, seconds)
                if loss is not None:
                    bar.set_postfix({"loss": f"{loss:.4g}"})
                if callback is not None:
                    callback(epoch, seconds, loss)
        finally:
            bar.close()
        self.routing_ = dict(run.routing)
        model = run.result()
        model.history_ = list(history)
        return model

    def _model_params(self) -> dict:
        return {name: getattr(self, name) for name in _MODEL_PARAMS}


class _Run:
    """The futures of one fit: factor blocks per side, the routing state, checkpoints."""

    def __init__(self, est: ALS, client, data: DistributedInteractions):
        self.est, self.client, self.data = est, client, data
        self.tag = f"rf-als-{uuid.uuid4().hex[:8]}"
        self.explicit = est.feedback == "explicit"
        self.params = est._model_params()
        self.params["global_bias"] = data.value_sum / data.nnz if self.explicit else 0.0
        self.params["device"] = "cuda" if est.device == "cuda" else "cpu"  # "auto": Dask blocks are host data
        f = est.factors
        self.routing = {}
        for side, n in (("users", data.n_users), ("items", data.n_items)):
            mode = est.routing
            if mode == "auto":
                mode = "whole" if n * f * 4 <= est.whole_limit_bytes or est._regularization_counts_columns() else "rows"
            self.routing[side] = mode
        self.user_factors = self.item_factors = None
        self.routes = {}

    def _submit(self, fn, *args, name: str, home: str | None = None):
        """Submit a task; ``home``: the worker it should run on (a loose restriction, see ``placement``)."""
        where = {} if home is None else {"workers": [home], "allow_other_workers": True}
        return submit(self.client, fn, *args, key=f"{self.tag}-{name}", retries=self.est.retries, **where)

    # -- start ----------------------------------------------------------------------------------
    def initialise(self) -> None:
        """Initial factors: the local fit's stream (users, then items) drawn block after block, a chain
        of tasks ("exact"); or one stream per block, seeded by (seed, side, block), all in parallel
        ("per_block": not the local fit's numbers)."""
        d, f = self.data, self.est.factors
        exact = self.est.init == "exact" or (
            self.est.init == "auto" and (d.n_users + d.n_items) * f <= _EXACT_INIT_LIMIT
        )
        self.init_ = "exact" if exact else "per_block"
        state = np.random.default_rng(self.est.seed).bit_generator.state
        sides = []
        for s, (side, starts) in enumerate((("user", d.user_starts), ("item", d.item_starts))):
            blocks = []
            home = placement(self.client, len(starts) - 1)  # drawn where the block's half-steps run
            for b in range(len(starts) - 1):
                if not exact:
                    state = np.random.default_rng([self.est.seed, s, b]).bit_generator.state
                drawn = self._submit(_tasks.random_block, state, int(starts[b + 1] - starts[b]), f, self.explicit,
                                     name=f"init-{side}-{b}", home=home[b])  # fmt: skip
                blocks.append(self._submit(_tasks.first, drawn, name=f"x-{side}-init-{b}", home=home[b]))
                if exact:
                    state = self._submit(_tasks.second, drawn, name=f"state-{side}-{b}")
            sides.append(blocks)
        self.user_factors, self.item_factors = sides

    # -- one iteration ----------------------------------------------------------------------------
    def iteration(self, epoch: int) -> float | None:
        """One iteration (users, then items); returns the training objective when asked for."""
        d = self.data
        self.user_factors = self._per_block("solve", "users", epoch, d.user_blocks, self.user_factors,
                                            self.item_factors, d.item_starts)  # fmt: skip
        self.item_factors = self._per_block("solve", "items", epoch, d.item_blocks, self.item_factors,
                                            self.user_factors, d.user_starts)  # fmt: skip
        wait_all(self.user_factors + self.item_factors)
        loss = self.loss(epoch) if self.est.calculate_loss else None
        every, last = self.est.checkpoint_every, epoch + 1 == self.est.epochs
        if self.est.checkpoint_dir is not None and ((epoch + 1) % every == 0 or last):
            self.checkpoint(epoch + 1)
        return loss

    def loss(self, epoch: int) -> float:
        """The local fit's training objective: the user blocks' share (data terms and their
        regularisation, against the routed item side) plus the item blocks' regularisation, / nnz."""
        d = self.data
        users = self._per_block("loss", "users", epoch, d.user_blocks, self.user_factors, self.item_factors,
                                d.item_starts)  # fmt: skip
        items = [self._submit(_tasks.item_loss, m, y, self.params, d.n_users, name=f"loss-items-{epoch}-{c}")
                 for c, (m, y) in enumerate(zip(d.item_blocks, self.item_factors))]  # fmt: skip
        wait_all(users + items)
        return float(sum(self.client.gather(users + items)) / d.nnz)

    def _per_block(self, task: str, side: str, epoch: int, matrices, own, other, other_starts):
        """One task per block of ``side`` (its ``matrices`` and ``own`` factor blocks) against ``other``'s
        blocks, routed whole or by rows: ``task`` "solve" (the half-step: new factor blocks) or "loss"."""
        other_side = "items" if side == "users" else "users"
        implicit, threads = not self.explicit, self.params["threads"]
        name = f"{side}-{epoch}" if task == "solve" else f"{side}-{epoch}-loss"
        home = placement(self.client, len(matrices))  # where ``distribute`` put the blocks
        whole_fn, fused_fn, routed_fn = (
            (_tasks.half_step, _tasks.half_step_whole, _tasks.half_step_routed) if task == "solve"
            else (_tasks.user_loss, _tasks.user_loss_whole, _tasks.user_loss_routed))  # fmt: skip
        if self.routing[other_side] == "whole" and len(set(home)) == len(home):
            # Every worker holds one block (the default): its one task concatenates the other side, takes
            # its Gram and solves. At ~3 ms of Dask CPU per task this saves the separate concatenation
            # and Gram tasks (2 tasks per half-step at 2 workers instead of 5); each worker computes the
            # Gram, the same SYRK of the same values (the same bits): the extra SYRKs cost 4-13 ms per
            # iteration on the bench sets, less than the 6 tasks saved (bench/RESULTS.md, follow-up 4).
            return [self._submit(fused_fn, m, x, self.params, *other, name=f"{task}-{name}-{b}", home=home[b])
                    for b, (m, x) in enumerate(zip(matrices, own))]  # fmt: skip
        if self.routing[other_side] == "whole":
            # One concatenated side per worker, built there: each worker fetches only the other workers'
            # blocks (one shared copy on one worker, then sent whole to the others, moved 1.5x the side
            # per half-step at 2 workers; this moves 1x). The same values, so the same bits.
            wholes = {w: self._submit(_tasks.concat_side, *other, name=f"whole-{name}-{i}", home=w)
                      for i, w in enumerate(dict.fromkeys(home))}  # fmt: skip
            first = next(iter(wholes.values()))
            # The Gram runs where its input is (unplaced, the scheduler sometimes ran it on another
            # worker: the whole side travelled once more).
            G = (self._submit(_tasks.gram, first, threads, name=f"gram-{name}", home=next(iter(wholes)))
                 if implicit else None)  # fmt: skip
            return [self._submit(whole_fn, m, wholes[home[b]], G, x, self.params, name=f"{task}-{name}-{b}",
                                 home=home[b]) for b, (m, x) in enumerate(zip(matrices, own))]  # fmt: skip
        G = None
        if implicit:
            partial = [self._submit(_tasks.gram, o, threads, name=f"gram-{name}-{c}") for c, o in enumerate(other)]
            G = self._submit(_tasks.sum_grams, *partial, name=f"gram-{name}")
        local, cols, needs = self._routes(side, matrices, other_starts, home)
        out = []
        for b, x in enumerate(own):
            pieces = [self._submit(_tasks.take_rows, other[c], cols[b], int(other_starts[c]), int(other_starts[c + 1]),
                                   name=f"rows-{name}-{b}-{c}") for c in needs[b]]  # fmt: skip
            out.append(self._submit(routed_fn, local[b], G, x, self.params, *pieces, name=f"{task}-{name}-{b}",
                                    home=home[b]))  # fmt: skip
        return out

    def _routes(self, side: str, matrices, other_starts, home):
        """Per block of ``side``: its column-renumbered matrix, the columns it reads, and which blocks hold them."""
        if side not in self.routes:
            cols = [self._submit(_tasks.needed_columns, m, name=f"cols-{side}-{b}") for b, m in enumerate(matrices)]
            local = [self._submit(_tasks.localise, m, c, name=f"local-{side}-{b}", home=home[b])
                     for b, (m, c) in enumerate(zip(matrices, cols))]  # fmt: skip
            touched = [self._submit(_blocks_touched, c, other_starts, name=f"touched-{side}-{b}")
                       for b, c in enumerate(cols)]  # fmt: skip
            self.routes[side] = (local, cols, self.client.gather(touched))
        return self.routes[side]

    # -- checkpoints ------------------------------------------------------------------------------
    def _manifest(self, iteration: int) -> dict:
        d = self.data
        return {
            "format": "recforge-dask-als-checkpoint",
            "iteration": iteration,
            "params": {k: v for k, v in self.params.items() if k not in ("epochs", "threads", "device")},
            "shape": [d.n_users, d.n_items],
            "user_starts": d.user_starts.tolist(),
            "item_starts": d.item_starts.tolist(),
            "nnz": d.nnz,
        }

    def checkpoint(self, iteration: int) -> None:
        """Write every factor block, then the manifest naming them; continue from the files."""
        root = str(self.est.checkpoint_dir)
        folder = f"{root}/iter-{iteration:05d}"
        self._submit(_make_dirs, folder, name=f"mkdir-{iteration}").result()
        saved = []
        for side, blocks in (("user", self.user_factors), ("item", self.item_factors)):
            saved += [self._submit(_tasks.save_block, f"{folder}/{side}-{b:05d}.npz", x,
                                   name=f"save-{side}-{iteration}-{b}") for b, x in enumerate(blocks)]  # fmt: skip
        wait_all(saved)
        manifest = self._manifest(iteration)
        self._submit(_tasks.write_json, f"{root}/{_MANIFEST}", manifest, name=f"manifest-{iteration}").result()
        self._submit(_remove_other_iterations, root, iteration, name=f"prune-{iteration}").result()
        self._load(folder, iteration)
        log.info("checkpoint of iteration %d written to %s", iteration, folder)

    def _load(self, folder: str, iteration: int) -> None:
        f, d = self.est.factors, self.data
        sides = []
        for side, starts in (("user", d.user_starts), ("item", d.item_starts)):
            sides.append([self._submit(_tasks.load_block, f"{folder}/{side}-{b:05d}.npz",
                                       int(starts[b + 1] - starts[b]), f, name=f"load-{side}-{iteration}-{b}")
                          for b in range(len(starts) - 1)])  # fmt: skip
        self.user_factors, self.item_factors = sides

    def restore(self) -> int | None:
        """The iteration of the checkpoint in ``checkpoint_dir`` (its blocks loaded), None when there is none."""
        root = str(self.est.checkpoint_dir)
        found = self._submit(_read_manifest, f"{root}/{_MANIFEST}", name="manifest-read").result()
        if found is None:
            log.info("no checkpoint in %s: starting from the initial factors", root)
            return None
        expected = self._manifest(found.get("iteration", -1))
        for key in ("format", "params", "shape", "user_starts", "item_starts", "nnz"):
            if found.get(key) != expected[key]:
                raise ValueError(
                    f"the checkpoint in {root} does not match this fit ({key}: {found.get(key)!r} vs"
                    f" {expected[key]!r}); use another checkpoint_dir or resume=False"
                )
        iteration = int(found["iteration"])
        if iteration > self.est.epochs:
            raise ValueError(f"the checkpoint in {root} is at iteration {iteration}, past epochs={self.est.epochs}")
        self._load(f"{root}/iter-{iteration:05d}", iteration)
        log.info("resuming from the checkpoint of iteration %d in %s", iteration, root)
        return iteration

    # -- result -----------------------------------------------------------------------------------
    def result(self) -> LocalALS:
        users = self.client.gather(self.user_factors)
        items = self.client.gather(self.item_factors)
        seen = self.data.to_csr(self.client)
        X = np.ascontiguousarray(np.concatenate([x for x, _ in users]))
        Y = np.ascontiguousarray(np.concatenate([y for y, _ in items]))
        biases = {}
        if self.explicit:
            biases = {"user_bias": np.concatenate([b for _, b in users]),
                      "item_bias": np.concatenate([b for _, b in items]),
                      "global_bias": self.params["global_bias"]}  # fmt: skip
        params = {k: self.params[k] for k in _MODEL_PARAMS}
        model = LocalALS.from_factors(X, Y, seen=seen, device="cpu", **biases, **params)
        model.user_ids, model.item_ids = self.data.user_ids, self.data.item_ids
        return model


# -- small tasks of the driver (run on a worker: the file system is the workers') ------------------
def _blocks_touched(cols: np.ndarray, starts: np.ndarray) -> list[int]:
    """The blocks (of boundaries ``starts``) holding any of the sorted global rows ``cols``."""
    return np.unique(np.searchsorted(starts, cols, side="right") - 1).tolist()


def _make_dirs(folder: str) -> None:
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)


def _read_manifest(path: str):
    import json
    from pathlib import Path

    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def _remove_other_iterations(root: str, keep: int) -> None:
    import shutil
    from pathlib import Path

    for folder in Path(root).glob("iter-*"):
        if folder.name != f"iter-{keep:05d}":
            shutil.rmtree(folder, ignore_errors=True)
