"""Parent side of the fuzz suite: run cases in child processes, many per process, and classify what
the children could not (a crash: the process died in the case; a hang: no answer within the timeout).

A crash in a case that was not the first of its process is re-run alone to isolate it (memory
damaged by an earlier case can crash a later one): the detail then says whether it crashes alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
# Seconds one case may take before it counts as a hang (the machine may be shared; every case is small).
CASE_TIMEOUT = float(os.environ.get("RECFORGE_FUZZ_TIMEOUT", "20"))
STARTUP_TIMEOUT = 120.0  # importing recforge in a busy child
# A child may not map more than this (a hostile size then fails fast with MemoryError instead of
# swapping the machine); not under ASan, which reserves terabytes of shadow address space.
MEMORY_LIMIT = 4 << 30


@dataclasses.dataclass
class Result:
    target: str
    kwargs: dict
    outcome: str
    detail: str

    def reproducer(self) -> str:
        return f"{self.target}(**{short_repr(self.kwargs)})"


def short_repr(value, limit: int = 600) -> str:
    import numpy as np

    with np.printoptions(threshold=40, edgeitems=3, linewidth=200):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _limit_memory() -> None:
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _spawn(cases: list) -> tuple[subprocess.Popen, queue.Queue, Path]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("RECFORGE_PROGRESS", "0")
    err = Path(tempfile.mkstemp(prefix="recforge-fuzz-", suffix=".err")[1])
    proc = subprocess.Popen(
        [sys.executable, str(CHILD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err.open("wb"),
        env=env,
        preexec_fn=_limit_memory,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line.decode(errors="replace"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    proc.stdin.write(pickle.dumps(cases))
    proc.stdin.close()
    return proc, lines, err


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _death(proc: subprocess.Popen, err: Path) -> str:
    code = proc.wait()
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    tail = err.read_text(errors="replace").strip().splitlines()[-6:]
    return f"process {how}: " + " | ".join(tail)[-500:]


def run_batch(cases: list, timeout: float | None = None) -> list[tuple[str, str] | None]:
    """Outcomes of ``cases`` run in one child, up to the first crash or hang (the rest: None);
    ``timeout``: seconds per case (default CASE_TIMEOUT)."""
    timeout = CASE_TIMEOUT if timeout is None else timeout
    results: list[tuple[str, str] | None] = [None] * len(cases)
    proc, lines, err = _spawn(cases)
    current, deadline = None, time.monotonic() + STARTUP_TIMEOUT + timeout
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                _kill(proc)
                if current is None:
                    raise RuntimeError("the fuzz child did not start: " + _death(proc, err)) from None
                results[current] = ("hang", f"no answer within {timeout:.0f} s")
                return results
            if line is None:
                if current is not None and results[current] is None:
                    results[current] = ("crash", _death(proc, err))
                elif proc.wait() != 0 and current is None:
                    raise RuntimeError("the fuzz child failed before its first case: " + _death(proc, err))
                return results
            if line.startswith("@@FUZZ start "):
                current = int(line.split()[2])
                deadline = time.monotonic() + timeout
            elif line.startswith("@@FUZZ done "):
                i, outcome, detail = json.loads(line[len("@@FUZZ done ") :])
                results[i] = (outcome, detail)
    finally:
        if proc.poll() is None:
            _kill(proc)
        err.unlink(missing_ok=True)


def run_cases(cases: list, timeout: float | None = None) -> list[Result]:
    """Every case's outcome: batches in child processes, restarted after each crash or hang."""
    outcomes: list[tuple[str, str] | None] = [None] * len(cases)
    start = 0
    while start < len(cases):
        part = run_batch(cases[start:], timeout)
        done = next((j for j, r in enumerate(part) if r is None), len(part))
        for j in range(done):
            outcomes[start + j] = part[j]
        last = start + done - 1
        if done and part[done - 1][0] == "crash" and done > 1:  # isolate: does it crash alone?
            alone = run_batch([cases[last]], timeout)[0]
            if alone is None or alone[0] != "crash":
                outcomes[last] = (
                    "crash",
                    f"only after earlier cases in the same process; alone: {alone}; {part[done - 1][1]}",
                )
        if done == 0:  # the child died before answering its first case
            outcomes[start] = ("crash", "the child died before the case started")
            done = 1
        start += done
    return [Result(c[0], c[1], *o) for c, o in zip(cases, outcomes)]


def counts(results: list[Result]) -> dict[str, int]:
    from oracle import OUTCOMES

    out = dict.fromkeys(OUTCOMES, 0)
    for r in results:
        out[r.outcome] += 1
    return out
