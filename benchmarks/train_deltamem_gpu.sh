#!/usr/bin/env bash
# Train the state-only δ-mem recall adapters (rank 8 and rank 32) on one H100/H200-class GPU and
# evaluate them on held-out episodes, in one command (budget: under 10 minutes; NOT YET MEASURED on
# a GPU — only dry-run on CPU with a tiny random model):
#
#   bash benchmarks/train_deltamem_gpu.sh [OUTDIR]          # default OUTDIR: runs/train/gpu
#   DRY_RUN=1 bash benchmarks/train_deltamem_gpu.sh         # CPU, tiny random model, 2 steps: checks it starts
#
# Each rank: configs/recipe/recall_gpu.yaml (bf16 autocast, 32 episodes per forward, Triton scan
# forward/backward via kernels.deltamem, method.kernel=auto), at most 4.5 minutes of training
# (train.max_minutes; rerunning resumes from the checkpoint), then the held-out table
# (true / mismatched / no history; one-digit keys at 48 tokens, 2-5 digit keys at 48-192 tokens) into OUTDIR/heldout_r<rank>.json.
# The default model must be converted in the cache first (python -m harness model=gemma3_270m ... once).
set -euo pipefail
out=${1:-runs/train/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
extra=()
evalsets='[{tokens:48,digits:[1,1],kind:code,end:"\n"},{tokens:48,digits:[2,5],kind:code,end:"\n"},{tokens:96,digits:[2,5],kind:code,end:"\n"},{tokens:192,digits:[2,5],kind:code,end:"\n"}]'
if [ "${DRY_RUN:-0}" = 1 ]; then
  extra=(model=tiny_random model.device=cpu train.bf16=false train.steps=2 train.batch=2 train.eval_episodes=2 train.eval_every=1
         "train.stages=[{tokens:8,digits:[1,1],place:1.0,kind:code}]")
  evalsets='[{tokens:32,digits:[1,3],kind:code,end:"\n"}]'
fi
for r in 8 32; do
  ck="$out/r$r"
  python3 -m harness.train +recipe=recall_gpu method.rank=$r train.ckpt_dir="$ck" train.out="$ck/final" "${extra[@]}"
  ad="$ck/final"; [ -e "$ad/adapter.json" ] || ad="$ck/adapter"  # out of time: the last checkpoint
  python3 -m harness.train +recipe=recall_gpu method.rank=$r method.adapter="$ad" train.eval_only=true \
    "train.eval_sets=$evalsets" train.eval_json="$out/heldout_r$r.json" "${extra[@]}"
done
echo "adapters: $out/r8/final $out/r32/final; held-out tables: $out/heldout_r*.json"
