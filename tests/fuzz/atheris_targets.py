"""Coverage-guided fuzzing (atheris, libFuzzer's engine) of the C++ CSR validator (``_core.Csr``) and
the model-file loader (``rf.load``), judged by the same oracle and open findings as the fuzz suite.

    python tests/fuzz/atheris_targets.py csr  -max_total_time=60 [-seed=1]
    python tests/fuzz/atheris_targets.py load -max_total_time=60

A bad outcome that no open finding explains raises (atheris then prints the input and exits non-zero;
a crash is caught by libFuzzer itself). ``load`` is structure-aware: the fuzzer's bytes pick a real
model file and edits of its members, .npy headers and metadata, re-zipped with valid CRCs (a raw byte
flip mostly stops at the CRC check). Python code is instrumented for coverage (the oracle and
``recforge.models.base``); the C++ is not (that needs a clang -fsanitize=fuzzer build), so the
validator is fuzzed as a black box with Python-side guidance. ``nox -s fuzz_atheris`` runs both.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
import zipfile

import atheris

with atheris.instrument_imports(include=["oracle", "targets", "recforge.models.base", "recforge._validation"]):
    import numpy as np
    from findings import OPEN, open_finding
    from oracle import BAD
    from targets import MODEL_CONFIGS, saved_model, t_core_csr, t_load

DTYPES = [np.int32, np.int64, np.uint32, np.uint64, np.int8, np.float64, np.float32, np.bool_]


def _array(fdp: atheris.FuzzedDataProvider, length: int, low: int, high: int) -> np.ndarray:
    values = fdp.ConsumeIntListInRange(length, low, high) if length else []
    dtype = DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)] if fdp.ConsumeBool() else np.int64
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(values, dtype=np.int64).astype(dtype)


def csr_case(data: bytes) -> dict:
    """``_core.Csr`` arguments from bytes: small shapes, lengths near the consistent ones, ids near the bounds."""
    fdp = atheris.FuzzedDataProvider(data)
    n_rows, n_cols = fdp.ConsumeIntInRange(0, 6), fdp.ConsumeIntInRange(0, 6)
    if fdp.ConsumeProbability() < 0.05:  # rarely, absurd dimensions
        n_rows, n_cols = fdp.ConsumeIntInRange(-(2**40), 2**40), fdp.ConsumeIntInRange(-(2**40), 2**40)
    nnz = fdp.ConsumeIntInRange(0, 12)
    indptr = _array(fdp, max(0, min(n_rows, 64) + 1 + fdp.ConsumeIntInRange(-1, 1)), -2, nnz + 2)
    if fdp.ConsumeBool():  # mostly a plausible, sorted row pointer
        indptr = np.sort(indptr)
    indices = _array(fdp, nnz + fdp.ConsumeIntInRange(-1, 1) if nnz else 0, -2, max(n_cols, 0) + 2)
    kind = fdp.ConsumeIntInRange(0, 3)
    data_ = None if kind == 0 else np.array(fdp.ConsumeFloatListInRange(len(indices), -1e6, 1e6),
                                            dtype=[np.float32, np.float64, np.int32][kind - 1])  # fmt: skip
    return {"indptr": indptr, "indices": indices, "data": data_, "shape": (n_rows, n_cols)}


def check(target: str, kwargs: dict, outcome: str, detail: str) -> None:
    if outcome in BAD and not open_finding(target, kwargs, outcome, detail):
        raise AssertionError(f"new {outcome} finding in {target}: {detail}\n  input: {repr(kwargs)[:500]}")


# While F2 is open, every empty Csr's .indices steals a dtype reference: the process dies after a few
# hundred. The fuzz suite covers it; here those inputs are left out until it is fixed.
F2_OPEN = any(f.id == "F2" for f in OPEN)


def fuzz_csr(data: bytes) -> None:
    kwargs = csr_case(data)
    if F2_OPEN and (len(kwargs["indices"]) == 0 or 0 in kwargs["shape"]):
        return
    check("core_csr", kwargs, *t_core_csr(**kwargs))


MODELS = sorted(MODEL_CONFIGS)
HOSTILE_JSON = [None, True, -1, 0, 2**31, 2**64, 10**400 // 10**300, 1e308, -0.5, "", "x" * 300, [], [1, [2]], {},
                {"a": 1}, "float64", "complex64", "object", "<U3", [-1], [2**40], [0, 0]]  # fmt: skip


def model_file(data: bytes) -> bytes:
    """A model file edited at the level of its structure (then re-zipped with valid CRCs, which a byte
    flip would break first): member payloads and .npy headers, metadata fields, members added or lost."""
    fdp = atheris.FuzzedDataProvider(data)
    raw = saved_model(MODELS[fdp.ConsumeIntInRange(0, len(MODELS) - 1)])
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = {n: bytearray(z.read(n)) for n in z.namelist()}
    meta = json.loads(bytes(members["__meta__.npy"][128:]).rstrip(b"\x00"))
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        names = sorted(members)
        name = names[fdp.ConsumeIntInRange(0, len(names) - 1)] if names else None
        op = fdp.ConsumeIntInRange(0, 5)
        if op == 0 and name and members[name]:  # a payload or header byte
            b = members[name]
            b[fdp.ConsumeIntInRange(0, len(b) - 1)] ^= fdp.ConsumeIntInRange(1, 255)
        elif op == 1 and name:  # a member cut short
            members[name] = members[name][: fdp.ConsumeIntInRange(0, len(members[name]))]
        elif op == 2:  # a metadata field set to a hostile JSON value
            node, path = meta, []
            while isinstance(node, dict) and node and fdp.ConsumeBool():
                key = sorted(node)[fdp.ConsumeIntInRange(0, len(node) - 1)]
                path.append(key)
                if not isinstance(node[key], dict):
                    break
                node = node[key]
            target = meta
            for key in path[:-1]:
                target = target[key]
            key = path[-1] if path else "class"
            target[key] = HOSTILE_JSON[fdp.ConsumeIntInRange(0, len(HOSTILE_JSON) - 1)]
        elif op == 3 and name:  # a member lost
            del members[name]
        elif op == 4:  # an undeclared member
            members[f"extra{fdp.ConsumeIntInRange(0, 3)}.npy"] = bytearray(fdp.ConsumeBytes(64))
        elif op == 5 and name:  # a .npy header rewritten: another dtype or shape
            buf = io.BytesIO()
            shape = tuple(fdp.ConsumeIntListInRange(fdp.ConsumeIntInRange(0, 3), 0, 2**33))
            descr = ["<f4", "<f8", "<i4", "<i8", "<c8", "|O", "<U2", "|b1", ">f4"][fdp.ConsumeIntInRange(0, 8)]
            np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fdp.ConsumeBool(),
                                                       "shape": shape})  # fmt: skip
            members[name] = bytearray(buf.getvalue()) + members[name][128:]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("__meta__.npy", _npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
        for n, b in members.items():
            if n != "__meta__.npy":
                z.writestr(n, bytes(b))
    return out.getvalue()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def fuzz_load(data: bytes) -> None:
    try:
        raw = model_file(data)
    except (ValueError, TypeError, OverflowError, KeyError, IndexError):  # an edit the writer cannot express
        return
    kwargs = {"model": "als", "damage": ("raw", raw)}
    check("load", kwargs, *t_load(**kwargs))


def main() -> None:
    which, args = sys.argv[1], sys.argv[2:]
    warnings.simplefilter("ignore")
    if which == "load":
        target = fuzz_load
    elif which == "csr":
        target = fuzz_csr
    else:
        raise SystemExit("usage: atheris_targets.py {csr,load} [libFuzzer flags]")
    atheris.Setup([sys.argv[0], *args], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
