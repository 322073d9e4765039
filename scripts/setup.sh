#!/usr/bin/env bash
# Create .venv (if missing) and install labkit with its test tools. Idempotent: a second run is quick.
#
#   LABKIT_TORCH   the torch requirement to install first (default: torch==2.13.0, the CPU build on
#                  the project's machines). On a CUDA machine: LABKIT_TORCH=torch (PyPI's Linux
#                  wheel is the CUDA build); see the README.
#   LABKIT_VENV    where the environment lives (default: .venv in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LABKIT_VENV:-.venv}
torch_req=${LABKIT_TORCH:-torch==2.13.0}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.labkit-installed"
want="$(cat pyproject.toml) $torch_req"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0  # already set up for this pyproject and torch
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build on a CPU machine.
"$venv/bin/python" -m pip install -q "$torch_req"
"$venv/bin/python" -m pip install -q -e ".[test]"
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
printf '%s' "$want" > "$stamp"
echo "setup: $venv ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
