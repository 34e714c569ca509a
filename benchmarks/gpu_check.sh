#!/usr/bin/env bash
# Everything about δ-mem that only a CUDA GPU can show, in one command (about 6–8 minutes on an
# H100): the GPU tests, the kernel timings against the PyTorch reference, and δ-mem decode
# against the bare backbone at 32k context on the paper's backbone shape (random weights).
#
#   bash benchmarks/gpu_check.sh [OUTDIR]      # default OUTDIR: benchmarks/results/gpu
#
# Needs python3 with torch (CUDA), triton, transformers==5.24.0, hydra-core, omegaconf, psutil
# and pytest. Wheels placed in .whl/ are installed first into /tmp/site, for machines that cannot
# reach a package index; e.g. for an image that has torch, triton and transformers 5.17:
#   pip download --no-deps -d .whl transformers==5.24.0 hydra-core==1.3.8 omegaconf==2.3.1
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3 Each step's output is kept in
# OUTDIR; a failing step is reported and the next one still runs.
set -uo pipefail
out=${1:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
status=0
step() {  # step NAME COMMAND...: run, keep the log, remember failures
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "=== $name FAILED (exit $rc)"; status=1; }
}
step env python3 -c "import torch, triton, transformers; print(torch.cuda.get_device_name(), 'torch', torch.__version__, \
'triton', triton.__version__, 'transformers', transformers.__version__)"
step gpu_tests python3 -m pytest -q -p no:cacheprovider -o addopts= -m gpu tests/test_kernels_deltamem.py tests/test_gpu.py
step bench_fwd python3 -m kernels.bench --dtype bf16 --T 512 4096 32768 --B 1 8 --r 8 64
step bench_decode python3 -m kernels.bench --dtype bf16 --T 1 --B 1 8 --r 8 64 --impls reference triton
step bench_bwd python3 -m kernels.bench --dtype bf16 --backward --T 4096 32768 --B 1 8 --r 8 --impls reference triton
step decode_qwen3_4b python3 benchmarks/deltamem_decode.py --model shape:qwen3-4b --context 32768 --new-tokens 64 --reps 3 \
  --out "$out/deltamem_decode_qwen3_4b_32k.md"
step decode_gemma3_270m python3 benchmarks/deltamem_decode.py --model shape:gemma3-270m --context 32768 --new-tokens 64 \
  --reps 3 --out "$out/deltamem_decode_gemma3_270m_32k.md"
exit $status
