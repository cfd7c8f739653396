#!/usr/bin/env bash
# buf breaking against main: the working tree's protos must not break what main
# published. Where main has no protos yet there is nothing to break.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=.tools/node_modules/.bin/buf
ref=main
git rev-parse --verify --quiet "$ref" >/dev/null || ref=HEAD
if ! git rev-parse --verify --quiet "$ref" >/dev/null \
  || [ -z "$(git ls-tree -r --name-only "$ref" -- protos 2>/dev/null)" ]; then
  echo "buf breaking: $ref has no protos yet; nothing to compare"
  exit 0
fi
"$buf" breaking --against ".git#ref=$(git rev-parse "$ref")"
echo "buf breaking: no breaking change against $ref"
