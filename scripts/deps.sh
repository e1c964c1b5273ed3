#!/usr/bin/env bash
# System packages the build needs: wreq's BoringSSL is compiled from source with cmake and clang
# (bindgen needs libclang). Installs them with apt-get when missing; does nothing otherwise.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v clang >/dev/null 2>&1 || missing+=(clang)
# bindgen loads libclang at build time.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
"$(dirname "$0")/apt-install.sh" "${missing[@]}"
