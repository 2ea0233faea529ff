#!/usr/bin/env bash
# Installs the worker benchmark's contenders once, cached by version outside the checkout:
# nats.js (npm) and nats-py (PyPI). Prints `KEY=value` lines for bench.sh to export.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench="$ARRAKIS_ROOT/e2e/bench"
node_key="$(sha256sum "$bench/js/package.json" | cut -c1-12)"
node_dir="$ARRAKIS_CACHE/bench-deps/node-$node_key"
if [[ ! -d "$node_dir/node_modules/nats" ]]; then
  command -v npm >/dev/null || die "npm is needed for the nats.js contender"
  mkdir -p "$node_dir"
  cp "$bench/js/package.json" "$node_dir/"
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error >&2) || die "npm install failed"
fi
py_key="$(sha256sum "$bench/py/requirements.txt" | cut -c1-12)"
py_dir="$ARRAKIS_CACHE/bench-deps/python-$py_key"
if [[ ! -x "$py_dir/bin/python" ]]; then
  command -v python3 >/dev/null || die "python3 is needed for the nats-py contender"
  python3 -m venv "$py_dir" >&2 || die "python3 -m venv failed"
  "$py_dir/bin/pip" install --quiet -r "$bench/py/requirements.txt" >&2 || die "pip install failed"
fi
# ES modules resolve packages next to the script, so it runs from the install directory.
cp "$bench/js/worker.mjs" "$node_dir/"
echo "BENCH_NODE_SCRIPT=$node_dir/worker.mjs"
echo "BENCH_PYTHON=$py_dir/bin/python"
