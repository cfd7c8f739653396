#!/usr/bin/env bash
# Fails when gen/ differs from what scripts/gen.sh writes from protos/ now.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
scripts/gen.sh "$fresh" 2>/dev/null
if ! diff -r -q "$fresh" gen >/dev/null; then
  echo "gen/ is stale: run 'make gen' and commit the result. Differences:" >&2
  diff -r -q "$fresh" gen >&2 || true
  exit 1
fi
echo "gen/ is up to date"
