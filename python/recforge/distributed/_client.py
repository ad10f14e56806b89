"""Client-side plumbing shared by the distributed drivers: submitting, waiting, checking the workers."""

from __future__ import annotations

from types import MappingProxyType

from distributed import wait

# Dask settings for a cluster that runs fits: ``dask.config.set(CLUSTER_CONFIG)`` before the cluster
# starts (a LocalCluster's workers inherit it), or the same keys in the workers' and scheduler's Dask
# YAML. With the defaults every idle Dask process spends ~0.02-0.03 CPU-s per second on diagnostics,
# and while tasks run the profiler samples their stacks every 10 ms: measured on a 2-worker
# LocalCluster, Dask's own CPU per ALS iteration (all but the task functions) fell from ~0.15 to ~0.08
# CPU-s (bench/RESULTS.md, issue 14 follow-up 3). Nothing here changes a result.
CLUSTER_CONFIG = MappingProxyType({
    "distributed.worker.profile.enabled": False,  # the statistical profiler (the dashboard's profile pages)
    "distributed.admin.tick.interval": "1s",  # event-loop responsiveness checks (default 20 ms)
    "distributed.admin.system-monitor.interval": "2s",  # the dashboard's CPU/memory/network samples (500 ms)
    "distributed.worker.memory.monitor-interval": "1s",  # memory-limit checks (100 ms): slower to react to a spike
})  # fmt: skip


def submit(client, fn, *args, key: str, retries: int, **kwargs):
    """``client.submit`` with a readable key (the dashboard shows it) and task retries.

    Keys are unique per call site and run, so a key names exactly one computation.
    """
    return client.submit(fn, *args, key=key, retries=retries, **kwargs)


def placement(client, n_blocks: int) -> list[str]:
    """The worker each of ``n_blocks`` blocks should live and run on: round-robin over the workers
    (sorted by address), each taking up to its thread count per round, so the first blocks go one to
    every worker and more blocks are shared in proportion to the threads.

    Used as a loose restriction (``workers=[w], allow_other_workers=True``): a lost worker's blocks
    run elsewhere. Without it the scheduler pulls a half-step's tasks towards the worker holding the
    shared whole side (the largest input), which left one of two workers with 3 of every 4 solves.
    """
    threads = sorted(client.nthreads().items())
    rounds = max((n for _, n in threads), default=0)
    slots = [w for r in range(max(1, rounds)) for w, n in threads if r < max(1, n)]
    return [slots[b % len(slots)] for b in range(n_blocks)] if slots else []


def wait_all(futures) -> None:
    """Wait for ``futures``; the first failed one raises its task's own exception here, on the client."""
    futures = list(futures)
    wait(futures)
    for f in futures:
        if f.status == "error":
            f.result()  # re-raises the worker's exception with its traceback
        if f.status == "cancelled":
            raise RuntimeError(f"task {f.key} was cancelled (the cluster lost it or was shut down)")


def check_workers(client, device: str = "cpu") -> None:
    """Raise a clear error when the cluster has no workers or a worker cannot load the compiled kernels
    (``device="cuda"``: or cannot run recforge's GPU kernels).

    Asked of every worker up front, so a missing extension is one message naming the workers
    rather than a task failing (and retried) deep inside a fit.
    """
    from ._tasks import probe_kernels

    answers = client.run(probe_kernels, device, on_error="return")
    if not answers:
        raise RuntimeError("the Dask cluster has no workers")
    bad = {w: a for w, a in answers.items() if a is not None}
    if bad:
        needed = (
            " or run its GPU kernels (device='cuda': a GPU and CuPy on every worker, e.g. dask-cuda's LocalCUDACluster)"
            if device == "cuda"
            else " (install recforge with its kernels on every worker)"
        )
        lines = "; ".join(f"{w}: {a}" for w, a in sorted(bad.items(), key=lambda kv: kv[0]))
        raise RuntimeError(
            f"{len(bad)} of {len(answers)} Dask workers cannot load recforge's compiled extension{needed}: {lines}"
        )
