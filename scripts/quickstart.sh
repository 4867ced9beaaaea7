#!/usr/bin/env bash
# The README's first command: set everything up, then run the main job (a box runs a command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== running examples/quickstart.py"
.venv/bin/python examples/quickstart.py "${1:-bl-home}"
