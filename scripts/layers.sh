#!/usr/bin/env bash
# The layers stay a house without loops (docs/architecture.md, "Layers"): no loop between top-level
# modules (depth 1), none between their rooms (depth 2), and at file level none but a folder's mod.rs
# with its own children. Run by .ci/run; prints the loop and the names that tie it when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for mode in "--depth 1" "--depth 2" "--files-in-folders"; do
  # shellcheck disable=SC2086
  if ! out=$(python3 scripts/module_cycles.py $mode src); then
    echo "layers: a loop ($mode):" >&2
    echo "$out" >&2
    status=1
  else
    echo "layers ($mode): ${out%%$'\n'*}"
  fi
done
# The team's copy of the tool, where there is one (resolves `super::` in a non-mod.rs file one level
# higher than Rust does, so it sees some loops differently): it must agree.
team=../shared/tools/module_cycles.py
if [ -f "$team" ]; then
  for depth in 1 2; do
    if ! out=$(python3 "$team" --depth "$depth" src); then
      echo "layers: a loop (the team's tool, --depth $depth):" >&2
      echo "$out" >&2
      status=1
    fi
  done
fi
exit $status
