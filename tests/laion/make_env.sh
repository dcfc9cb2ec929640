#!/usr/bin/env bash
# Builds the LAION-CLAP parity test's own environment at $1 (default .laion-env): the original laion_clap code with
# numpy<2, apart from tunelens' environment. laion_clap goes in without its dependencies: the ones it lists for
# training (wandb, webdataset, wget, ...) are not needed to build and run its model.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
env="${1:-.laion-env}"
python="${PYTHON:-python3}"
rm -rf "$env"
"$python" -m venv "$env"
"$env/bin/pip" install -q --upgrade pip
"$env/bin/pip" install -q torch==2.13.0
"$env/bin/pip" install -q -r "$here/requirements.txt"
"$env/bin/pip" install -q --no-deps laion_clap==1.1.7
"$env/bin/python" -c "import torch, numpy; assert numpy.__version__ < '2', numpy.__version__; assert '+cpu' in torch.__version__, torch.__version__"
touch "$env/.ready"  # written last: a half-built environment is rebuilt
