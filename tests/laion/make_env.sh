#!/usr/bin/env bash
# Builds the LAION-CLAP parity test's own environment at $1 (default .laion-env): the original laion_clap code with
# numpy<2, apart from tunelens' environment, installed from requirements/laion.lock (every package pinned with its
# hash; laion_clap without the dependencies it lists for training, which building and running its model never needs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
env="${1:-.laion-env}"
python="${PYTHON:-python3.11}"
rm -rf "$env"
"$python" -m venv "$env"
"$env/bin/pip" install -q --require-hashes --no-deps ${TORCH_FIND_LINKS:+--find-links "$TORCH_FIND_LINKS"} \
    -r "$here/../../requirements/laion.lock"
"$env/bin/python" -c "import torch, numpy; assert numpy.__version__ < '2', numpy.__version__; assert '+cpu' in torch.__version__, torch.__version__"
touch "$env/.ready"  # written last: a half-built environment is rebuilt
