#!/usr/bin/env bash
# llama.cpp's own OpenAI-compatible server (parallel slots, continuous batching: several questions'
# requests, or the n samples of one, decode in one batch), built from the llama.cpp sources that the
# llama-cpp-python sdist of the installed version vendors: the same engine, MIT-licensed, nothing
# downloaded beyond the package registry. Used by the tests of the HTTP backend and by
# benchmarks/bench_concurrency.py. Compiled with the same flags as the bindings (no AMX: see
# scripts/llama-build-flags.sh). Cached: rebuilt when llama-cpp-python's version, the flags or the CPU change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
. scripts/llama-build-flags.sh
version=$("$VENV/bin/python" -c "import llama_cpp; print(llama_cpp.__version__)")
key=$(printf '%s\n%s\n' "$LLAMA_NO_AMX" "$(llama_cpu_key)" | sha256sum | cut -c1-12)
out="$VENV/bin/llama-server"
stamp="$VENV/.llama-server-$version-$key"
[ -x "$out" ] && [ -f "$stamp" ] && exit 0
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "sounding: building llama.cpp's server from llama-cpp-python $version's sources (a few minutes)..." >&2
"$VENV/bin/python" -m pip download --disable-pip-version-check --no-deps --no-binary :all: -q -d "$work" \
    "llama-cpp-python==$version"
tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON "-DCMAKE_C_FLAGS=$LLAMA_NO_AMX" "-DCMAKE_CXX_FLAGS=$LLAMA_NO_AMX" >"$work/cmake.log"
cmake --build "$work/build" --target llama-server -j"$(nproc)" >"$work/build.log"
cp "$work/build/bin/llama-server" "$out"
rm -f "$VENV"/.llama-server-*
touch "$stamp"
echo "sounding: llama-server built in $(( $(date +%s) - start )) s" >&2
