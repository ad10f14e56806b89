#!/usr/bin/env python3
"""Compile every shipped CUDA kernel source with nvcc for sm_80, sm_90 and PTX: CI's check that they build.

recforge ships its kernels as sources that CuPy compiles at first use (README "GPU"), so nothing in
the build compiles them; this script does, with every warning an error, and also checks what NVRTC
needs: no ``#include`` (NVRTC has no host headers) and an ``extern "C" __global__`` definition of
every kernel ``python/recforge/_ops/kernels.py`` looks up. A few seconds per source.

    python tools/check_cuda_kernels.py             # nvcc from PATH (or $CUDACXX); missing nvcc fails
    python tools/check_cuda_kernels.py --archs 90  # other architectures
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "csrc" / "cuda"


def _kernel_table():
    """``kernels.py``'s SOURCES and COMPILE_OPTIONS, read without importing recforge (no build needed)."""
    spec = importlib.util.spec_from_file_location("_rf_kernels", ROOT / "python" / "recforge" / "_ops" / "kernels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SOURCES, mod.COMPILE_OPTIONS


def check_source(path: Path, kernels: tuple[str, ...], options: tuple[str, ...], nvcc: str, archs: list[str],
                 out_dir: Path) -> list[str]:  # fmt: skip
    """The problems of one source (empty when it compiles for every arch and defines every kernel)."""
    text = path.read_text(encoding="utf-8")
    problems = [f"{path.name}:{n}: #include (NVRTC has no host headers; keep kernel sources self-contained)"
                for n, line in enumerate(text.splitlines(), 1) if re.match(r"\s*#\s*include\b", line)]  # fmt: skip
    for kernel in kernels:
        if not re.search(rf'extern\s+"C"\s+__global__\s+void\s+{kernel}\s*\(', text):
            problems.append(f'{path.name}: no extern "C" __global__ definition of {kernel} (kernels.py loads it)')
    # A cubin per architecture, and PTX for the newest one (what a future GPU's driver would JIT; NVRTC
    # produces the same kind of code for the GPU it runs on).
    targets = [(f"sm_{arch}", [f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-Werror"], "cubin") for arch in archs]
    targets.append((f"compute_{archs[-1]} PTX", [f"-arch=compute_{archs[-1]}", "-ptx"], "ptx"))
    for label, flags, ext in targets:
        out = out_dir / f"{path.stem}.{label.split()[0]}.{ext}"
        cmd = [nvcc, *options, *flags, "-Werror", "all-warnings", "-o", str(out), str(path)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            problems.append(f"{path.name} ({label}) does not compile:\n  {' '.join(cmd)}\n{result.stderr.strip()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["80", "90"], help="SM architectures (default: 80 90)")
    args = parser.parse_args(argv)
    nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not nvcc:
        print("FAIL: nvcc not found (put the CUDA toolkit's bin/ on PATH or set CUDACXX)", file=sys.stderr)
        return 1
    sources, options = _kernel_table()
    shipped = {p.name for p in SOURCE_DIR.glob("*.cu")}
    problems = [
        f"csrc/cuda/{name} is shipped but not listed in kernels.SOURCES" for name in sorted(shipped - set(sources))
    ]
    problems += [f"kernels.SOURCES lists {name}, which is not in csrc/cuda/" for name in sorted(set(sources) - shipped)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(set(sources) & shipped):
            problems += check_source(SOURCE_DIR / name, sources[name], options, nvcc, args.archs, Path(tmp))
    if problems:
        print("\n".join(f"FAIL: {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"CUDA kernels OK: {len(sources)} source(s), {sum(map(len, sources.values()))} kernels, "
          f"sm_{', sm_'.join(args.archs)} + compute_{args.archs[-1]} PTX ({nvcc})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
