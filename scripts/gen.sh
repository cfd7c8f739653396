#!/usr/bin/env bash
# Generates Python modules, .pyi stubs and a descriptor set from protos/.
# Usage: scripts/gen.sh [OUT_DIR]   (default: gen)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gen}"
py=.venv/bin/python
wkt="$($py -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
rm -rf "$out/python/corrmesh/v1" "$out/descriptors"
mkdir -p "$out/python" "$out/descriptors"
mapfile -t protos < <(find protos -name '*.proto' | sort)
$py -m grpc_tools.protoc \
  -I protos -I third_party/googleapis -I "$wkt" \
  --python_out="$out/python" \
  --grpc_python_out="$out/python" \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy \
  --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc \
  --mypy_out="$out/python" \
  --mypy_grpc_out="$out/python" \
  "${protos[@]#protos/}"
# The descriptor set also carries google.rpc's error details, so tools such as
# `buf curl --schema` can decode the BadRequest in an error or a PublishResult.
$py -m grpc_tools.protoc \
  -I protos -I third_party/googleapis -I "$wkt" \
  --descriptor_set_out="$out/descriptors/corrmesh.binpb" \
  --include_imports --include_source_info \
  "${protos[@]#protos/}" google/rpc/error_details.proto
# corrmesh is a namespace package spread over gen/python and services: no
# __init__.py at the top, but the generated package itself gets one.
touch "$out/python/corrmesh/v1/__init__.py" "$out/python/corrmesh/v1/py.typed"
