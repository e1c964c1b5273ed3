#!/usr/bin/env bash
# The whole test suite: Rust unit + integration tests, including the official OpenAI Python SDK
# driving the real binary. Installs the SDKs, Selenium and moto (S3) into .venv-test on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

venv=.venv-test
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import openai.resources.videos" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
fi
if ! "$venv/bin/python" -c "import selenium" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
fi
if [ ! -x "$venv/bin/moto_server" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/s3/requirements.txt
fi
if ! LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/python" -c "import litellm" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
if [ ! -x "$venv/bin/schemathesis" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
fi

# Debian packages the tests use: npm (the Node SDK), chromium + chromium-driver (the browser tests:
# the console, a page on another origin), redis-server (the shared store of several replicas).
packages=()
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
# `ip` brings up loopback in the network namespace the schemathesis run is kept in.
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
./scripts/apt-install.sh "${packages[@]}"

# The official OpenAI Node SDK, pinned by tests/sdk/node/package-lock.json.
if [ ! -d tests/sdk/node/node_modules/openai ]; then
  (cd tests/sdk/node && npm ci --no-audit --no-fund --loglevel=error)
fi
# The Vercel AI SDK and its providers, pinned by tests/clients/node/package-lock.json.
if [ ! -d tests/clients/node/node_modules/ai ]; then
  (cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)
fi

export GROK2API_TEST_PYTHON="$PWD/$venv/bin/python"
# Benches first, in test mode (each runs once as a smoke check), then every test target.
cargo test --locked --bench '*' "$@"
cargo test --locked --lib --bins --tests "$@"
# The end-to-end suite again, against the official-xAI-API upstream (same tests, other simulator).
GROK2API_TEST_UPSTREAM=xai cargo test --locked --test images --test edits --test video --test errors \
  --test faults --test tasks --test videos --test events --test openapi --test compat --test quality "$@"
# And on the shared Redis store (each gateway its own redis-server), as several replicas run.
GROK2API_TEST_STORE=redis cargo test --locked --test images --test video --test errors --test faults \
  --test tasks --test videos --test events --test openapi --test operations --test console --test compat "$@"
