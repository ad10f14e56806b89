#!/usr/bin/env bash
# The C++ core stands alone: run the CTest smoke tests of a build tree, install its core with
# `cmake --install --component recforge_dev`, and build + run a project that finds it with
# find_package(recforge).
#
#   tools/cpp_smoke.sh                 configure a Python-free build in build/cpp
#                                      (RECFORGE_BUILD_TESTS=ON), build it, then check it
#   tools/cpp_smoke.sh BUILD_DIR       check an existing build tree configured with
#                                      RECFORGE_BUILD_TESTS=ON (e.g. build/editable/<tag>)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

build="${1:-}"
if [ -z "$build" ]; then
    build="$root/build/cpp"
    cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DRECFORGE_BUILD_TESTS=ON
    cmake --build "$build" -j "$jobs"
fi
build="$(cd "$build" && pwd)"

ctest --test-dir "$build" --output-on-failure

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --component recforge_dev --prefix "$work/prefix"
cmake -S "$root/tests/cpp/consumer" -B "$work/consumer" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$work/prefix"
cmake --build "$work/consumer" -j "$jobs"
"$work/consumer/consumer"
