#!/usr/bin/env bash
# Lint without changing anything: ruff check, ruff format --check, clang-format --dry-run.
# A tool that is not installed is skipped with a message (pip install -r tools/lint-requirements.txt).
# `tools/lint.sh --fix` applies ruff's fixes and both formatters instead.
set -uo pipefail
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
status=0

run() {  # run <label> <command...>: report and remember a failure, keep going
    echo "== $1"
    shift
    "$@" || status=1
}

if command -v ruff >/dev/null; then
    if [ "$fix" = 1 ]; then
        run "ruff check --fix" ruff check --fix .
        run "ruff format" ruff format .
    else
        run "ruff check" ruff check .
        run "ruff format --check" ruff format --check .
    fi
else
    echo "== ruff not installed: skipped (pip install -r tools/lint-requirements.txt)"
fi

if command -v clang-format >/dev/null; then
    mapfile -t cpp < <(git ls-files 'csrc/*.cpp' 'csrc/*.hpp' 'csrc/*.cu' 'csrc/*.cuh' 'tests/cpp/*.cpp')
    if [ "$fix" = 1 ]; then
        run "clang-format -i" clang-format -i "${cpp[@]}"
    else
        run "clang-format --dry-run (${#cpp[@]} files)" clang-format --dry-run -Werror "${cpp[@]}"
    fi
else
    echo "== clang-format not installed: skipped (pip install -r tools/lint-requirements.txt)"
fi

exit $status
