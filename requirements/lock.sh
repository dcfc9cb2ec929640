#!/usr/bin/env bash
# Re-resolves the locks from pyproject.toml's ranges and the .in files, with uv (`make lock` runs this).
#   requirements/tunelens.lock  .venv: tunelens' dependencies with every extra the Makefile installs, plus extra.in
#   requirements/laion.lock     .laion-env: the LAION-CLAP parity test's own numpy<2 environment
# Each pins every package, with hashes, for CPython 3.11 on Linux x86-64. Check a refresh with `make test` (it
# rebuilds .venv from the new lock) and `make test-latest` before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
torch_links="${TORCH_FIND_LINKS:-/opt/wheels}"  # where torch 2.13.0+cpu lies: a folder, or PyTorch's CPU wheel page
common=(--quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --find-links "$torch_links" --constraint requirements/constraints.txt --custom-compile-command "make lock")
"$uv" pip compile "${common[@]}" --upgrade pyproject.toml requirements/extra.in \
    --extra cpu --extra ray --extra serve --extra beets --extra demo --extra test \
    --no-emit-package pyaudio --output-file requirements/tunelens.lock
"$uv" pip compile "${common[@]}" --upgrade requirements/laion.in --output-file requirements/laion.lock
# laion_clap itself goes in without its dependencies: the ones it lists for training (wandb, webdataset, wget, ...)
# are not needed to build and run its model.
echo "laion_clap==1.1.7" | "$uv" pip compile "${common[@]}" --no-deps --no-header - >> requirements/laion.lock
echo "Wrote requirements/tunelens.lock ($(grep -c '^[a-z0-9]' requirements/tunelens.lock) packages) and" \
     "requirements/laion.lock ($(grep -c '^[a-z0-9]' requirements/laion.lock) packages)."
