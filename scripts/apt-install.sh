#!/usr/bin/env bash
# Installs the given Debian packages with apt-get (through sudo when not root); used by deps.sh and
# test.sh for what is missing.
set -euo pipefail
[ $# -gt 0 ] || exit 0
echo "installing: $*" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
