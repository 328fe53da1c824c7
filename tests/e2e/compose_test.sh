#!/usr/bin/env bash
# The compose end-to-end test (tests/e2e/compose_test.py): skipped with one
# line when no Docker Engine answers. Arguments go to the test
# (--single, --keep, --no-build).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
    echo "compose e2e: skipped: no Docker Engine answers (docker info failed)"
    exit 0
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    echo "compose e2e: skipped: neither 'docker compose' nor docker-compose is installed"
    exit 0
fi
exec python3 tests/e2e/compose_test.py "$@"
