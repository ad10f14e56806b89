"""Run recforge's CUDA kernel sources on the CPU: compile them as C++ against simt.hpp and launch them
through ctypes, with the argument checks CuPy's launches need (see tests/test_cuda_emulation.py)."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from recforge._ops import cuda

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "csrc" / "cuda"
# Scalar parameter types: the ctypes type and the NumPy scalar type CuPy must be given (it packs a NumPy
# scalar by its own size, so it must be exactly the parameter's type).
C_TYPES = {
    "rf_i64": (np.int64, ctypes.c_longlong),
    "int": (np.int32, ctypes.c_int),
    "float": (np.float32, ctypes.c_float),
}
POINTER_DTYPES = {"float*": np.float32, "rf_i64*": np.int64, "int*": np.int32, "rf_u64*": np.uint64}


def kernel_signatures(text: str) -> dict[str, list[tuple[str, str]]]:
    """{kernel: [(C type, name), ...]} of every extern "C" __global__ kernel of the source."""
    out = {}
    for m in re.finditer(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', text):
        params = [" ".join(p.split()) for p in m.group(2).split(",")]
        out[m.group(1)] = [(p.rsplit(" ", 1)[0].replace(" *", "*"), p.rsplit(" ", 1)[1]) for p in params]
    return out


def launcher_source(source: Path, signatures) -> str:
    """C++ that includes ``source`` and wraps each kernel in ``emu_<kernel>(grid, block, shared, args...)``."""
    lines = ['#include "simt.hpp"', f'#include "{source}"']
    for kernel, params in signatures.items():
        decl = ", ".join(f"{t} {n}" for t, n in params)
        call = ", ".join(n for _, n in params)
        lines.append(f'extern "C" void emu_{kernel}(unsigned grid, unsigned block, std::size_t shared, {decl}) '
                     f"{{ rf_emu::launch(grid, block, shared, [&] {{ {kernel}({call}); }}); }}")  # fmt: skip
    return "\n".join(lines) + "\n"


class Emulator:
    """The compiled kernels (one library per source) and a ``cuda._launch`` stand-in that checks every
    argument's type."""

    def __init__(self, libs: dict, signatures: dict):
        self.signatures, self.launches, self.functions = {}, [], {}
        for source, lib in libs.items():
            for kernel, params in signatures[source].items():
                fn = getattr(lib, f"emu_{kernel}")
                fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_size_t] + [
                    ctypes.c_void_p if t.endswith("*") else C_TYPES[t][1] for t, _ in params
                ]
                fn.restype = None
                self.signatures[kernel], self.functions[kernel] = params, fn

    def launch(self, kernel: str, n_blocks: int, args: tuple, shared: int = 0) -> None:
        params = self.signatures[kernel]
        assert len(args) == len(params), f"{kernel}: {len(args)} arguments for {len(params)} parameters"
        converted = []
        for a, (ctype, pname) in zip(args, params):
            if ctype.endswith("*"):
                assert isinstance(a, np.ndarray) and a.flags.c_contiguous, f"{kernel}.{pname}: not a contiguous array"
                want = POINTER_DTYPES[ctype.replace("const ", "")]
                assert a.dtype == want, f"{kernel}.{pname}: dtype {a.dtype} for {ctype}"
                converted.append(a.ctypes.data)
            else:  # CuPy packs a NumPy scalar by its own size: it must be exactly the parameter's type
                want = C_TYPES[ctype][0]
                assert type(a) is want, f"{kernel}.{pname}: {type(a).__name__} for {ctype}"
                converted.append(float(a) if want is np.float32 else int(a))
        if n_blocks < 1:
            return
        grid = min(int(n_blocks), cuda.MAX_GRID)
        self.launches.append(kernel)
        self.functions[kernel](grid, cuda.BLOCK, shared, *converted)


def build(folder: Path) -> Emulator | None:
    """Compile every shipped kernel source (``kernels.SOURCES``) into ``folder``; None without g++ (C++20)."""
    from recforge._ops import kernels

    gxx = shutil.which("g++")
    if gxx is None:
        return None
    libs, signatures = {}, {}
    for name in kernels.SOURCES:
        source = SOURCE_DIR / name
        signatures[name] = kernel_signatures(source.read_text())
        launcher = folder / f"{source.stem}_launch.cpp"
        launcher.write_text(launcher_source(source, signatures[name]))
        lib = folder / f"lib{source.stem}_emu.so"
        cmd = [gxx, "-std=c++20", "-O1", "-g", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror",
               f"-I{Path(__file__).resolve().parent}", str(launcher), "-o", str(lib)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the kernels of {name} do not compile as C++:\n{result.stderr}")
        libs[name] = ctypes.CDLL(str(lib))
    return Emulator(libs, signatures)


def numpy_gemm(queries, items, out, precision):
    """cuBLAS's stand-in; "tf32" / "bf16" round the inputs to 10 / 7 mantissa bits, as the tensor cores do."""
    if precision != "fp32":
        bits = 13 if precision == "tf32" else 16
        mask = np.uint32((0xFFFFFFFF >> bits) << bits)
        queries = (queries.view(np.uint32) & mask).view(np.float32)
        items = (items.view(np.uint32) & mask).view(np.float32)
    np.matmul(queries, items.T, out=out)
