#!/usr/bin/env bash
# The GPU check, in one go, on a machine with an NVIDIA GPU, its driver and CuPy (no internet needed):
# install recforge from this tree, run the `cuda` tests (GPU top-K, GPU ALS, the contract suite's cuda
# case), the GPU ALS benchmark and the GPU top-K benchmark, then print one summary line (the last
# line of the output, starting "GPU CHECK"). The whole run stays under 10 minutes: each step has its
# own limit, and the last benchmark gets what is left of RECFORGE_GPU_CHECK_SECONDS (default 570).
#
#   bash bench/gpu_check.sh            # logs, JUnit XML and the benchmarks' JSON/markdown in $OUT
#                                      # (default /tmp/gpu_check)
#   RECFORGE_GPU_CHECK_QUICK=1 ...     # the benchmarks at --quick sizes (a smoke run)
#   RECFORGE_GPU_CHECK_INSTALL=0 ...   # use the recforge already installed for $PYTHON (default python3)
#   RECFORGE_GPU_CHECK_BENCHES="als_gpu" ...   # which benchmarks, in order (default "als_gpu topk_gpu")
#
# Build requirements (scikit-build-core, pybind11 >= 3, cmake, ninja) must be installed: the build
# runs without isolation and fetches nothing. Wheels found in .whl/ (e.g. a newer pybind11, or
# implicit + rmm-cu13 for the benchmarks' implicit peer, fetched elsewhere with `pip download`) are
# installed first, offline. Sized for an H100/H200: install ~1 min (16 cores), tests ~2 min, ALS
# benchmark ~2 min, top-K benchmark ~3 min. A failed step is reported in the summary and the next
# steps still run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
export RECFORGE_DATA="${RECFORGE_DATA:-$PWD/../shared/data}"
PY="${PYTHON:-python3}"
SECONDS=0
TOTAL="${RECFORGE_GPU_CHECK_SECONDS:-570}"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -3
"$PY" - <<'PY' 2>&1
import importlib.metadata as md
for d in ("numpy", "scipy", "cupy-cuda13x", "torch", "scikit-build-core", "pybind11", "cmake", "ninja", "hypothesis",
          "pytest", "implicit"):
    try:
        print(f"  {d} {md.version(d)}")
    except md.PackageNotFoundError:
        print(f"  {d} (not installed)")
PY

if compgen -G ".whl/*.whl" >/dev/null; then
    echo "== carried wheels (.whl/)"
    "$PY" -m pip install -q --no-index --no-deps --no-cache-dir .whl/*.whl 2>&1 | tail -5
fi

echo "== install (pip install --no-build-isolation --no-deps .)"
install_status=ok
if [ "${RECFORGE_GPU_CHECK_INSTALL:-1}" = "0" ]; then
    install_status=skipped
elif ! timeout 200 "$PY" -m pip install --no-build-isolation --no-deps --no-cache-dir . >"$OUT/install.log" 2>&1; then
    install_status="FAILED (see install.log)"
    tail -30 "$OUT/install.log"
fi
echo "install: $install_status (${SECONDS}s)"

echo "== kernels: compile and load through CuPy (NVRTC)"
kernels_status=$(timeout 120 "$PY" -c '
import recforge as rf
from recforge._ops import kernels
print("cupy_available", rf.cupy_available())
kernels.load_all()
print("ok")' 2>&1 | tail -3 | tr '\n' ' ')
echo "kernels: $kernels_status"

echo "== tests (python -m pytest -m cuda)"
tests_start=$SECONDS
# The installed recforge is the one imported: this tree has it under python/, not on the path.
timeout 240 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests --junitxml="$OUT/pytest.xml" 2>&1 \
    | tee "$OUT/pytest.log" | tail -60
echo "tests: $((SECONDS - tests_start))s"

quick=()
[ "${RECFORGE_GPU_CHECK_QUICK:-0}" = "1" ] && quick=(--quick)
declare -A bench_limit=([als_gpu]=150 [topk_gpu]=300)
declare -A bench_repeat=([als_gpu]=1 [topk_gpu]=3)
for bench in ${RECFORGE_GPU_CHECK_BENCHES:-als_gpu topk_gpu}; do
    left=$((TOTAL - SECONDS))
    limit=$(( left < ${bench_limit[$bench]:-150} ? left : ${bench_limit[$bench]:-150} ))
    if [ "$limit" -lt 30 ]; then
        echo "== benchmark $bench: skipped (${left}s left of ${TOTAL}s)"
        continue
    fi
    echo "== benchmark (python bench/run.py $bench, at most ${limit}s)"
    bench_start=$SECONDS
    timeout "$limit" "$PY" bench/run.py "$bench" --repeat "${bench_repeat[$bench]:-1}" "${quick[@]}" --out "$OUT" 2>&1 \
        | tee "$OUT/bench_$bench.log" | tail -40
    echo "benchmark $bench: $((SECONDS - bench_start))s"
done

"$PY" - "$OUT" "$install_status" "$kernels_status" "$SECONDS" <<'PY'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out, install, kernels, seconds = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
parts = [f"install {install}", "kernels " + ("ok" if kernels.strip().endswith("ok") else "FAILED")]
try:
    suites = ET.parse(out / "pytest.xml").getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    parts.append(f"tests {passed} passed, {count['failures'] + count['errors']} failed, {count['skipped']} skipped/xfail")
except (OSError, ET.ParseError) as exc:
    parts.append(f"tests: no report ({exc.__class__.__name__})")
for path in sorted(out.glob("als_gpu*.json")):
    record = json.loads(path.read_text())
    for r in record["rows"]:
        peak = r.get("fp32_peak_fraction")
        parts.append(f"[ALS {r['case'].split(' nnz=')[-1]}] {r['library']} {r['value']:.4f} s/iter"
                     + (f" ({peak:.1%} of fp32 peak)" if peak else ""))
    if not record["rows"]:
        parts.append(f"ALS benchmark: no rows {record.get('not_measured') or ''}")
    break
else:
    parts.append("ALS benchmark: no results")
for path in sorted(out.glob("topk_gpu*.json")):
    record = json.loads(path.read_text())
    rows = record["rows"]
    if not rows:
        parts.append(f"benchmark: no rows {record.get('not_measured') or ''}")
    by_case = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["library"]] = r["value"]  # ms: all users, or the GEMM alone
    for case, libs in by_case.items():
        ours = libs.get("recforge")
        bits = [f"{lib} {ms:.1f} ms" for lib, ms in libs.items()]
        if ours and "torch matmul+topk" in libs:
            bits.append(f"{libs['torch matmul+topk'] / ours:.2f}x torch")
        parts.append(f"[{case}] " + ", ".join(bits))
    break
else:
    parts.append("benchmark: no results")
print(f"GPU CHECK ({seconds}s): " + " | ".join(parts))
PY
