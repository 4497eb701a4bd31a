#!/usr/bin/env bash
# The name operators know from the original system: apply the database migrations.
# A thin wrapper over `bisnesgpt migrate` (pass --dry-run to only list pending files).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -x "$ROOT/.venv/bin/bisnesgpt" ]; then
    exec "$ROOT/.venv/bin/bisnesgpt" migrate "$@"
fi
exec bisnesgpt migrate "$@"
