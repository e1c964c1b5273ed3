#!/usr/bin/env bash
# Build (installing the system packages the build needs, once) and run the gateway:
#   ./scripts/run.sh --demo          # against the built-in simulated grok.com
#   ./scripts/run.sh --config config.toml
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
exec cargo run --release --locked -- "$@"
