#!/usr/bin/env bash
# Thin wrapper around `accelerate launch loop/train.py` (issue #3 grows it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec accelerate launch "$here/loop/train.py" "$@"
