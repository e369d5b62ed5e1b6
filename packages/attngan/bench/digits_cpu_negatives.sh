#!/usr/bin/env bash
# The longest CPU digit run of BENCHMARKS.md (## attngan, "digit identity"): the recipe of
# digits_cpu.sh plus the opt-in digit-swapped negatives (not in the paper) in DAMSM
# pretraining, in G's loss and as D's wrong pairs, trained to 16,000 iterations
# (measured as 4,000 iterations, then --resume to 16,000: about 8 min + 90 min at one torch
# thread). Evaluates the faithfulness metric and runs bench/digit_probe.py on the last
# checkpoint. Usage: packages/attngan/bench/digits_cpu_negatives.sh [OUTDIR] [ITERS]
set -euo pipefail
out="${1:-output/digits-cpu-negatives}"
iters="${2:-16000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
uv run attngan-pretrain-damsm --outdir "$out" --device cpu --image_encoder tiny \
    --set TRAIN.MAX_EPOCH=15 --set GANLAB.SAMPLE_ITERS=625 --set GANLAB.CHECKPOINT_ITERS=625 \
    --set GANLAB.DIGIT_NEGATIVES=4
uv run attngan-train --outdir "$out" --device cpu --max_iters "$iters" \
    --set GAN.GF_DIM=16 --set GAN.DF_DIM=16 --set GAN.R_NUM=1 --set TRAIN.BATCH_SIZE=16 \
    --set TRAIN.SMOOTH.LAMBDA=1.0 --set GANLAB.EMA_DECAY=0.995 \
    --set GANLAB.SAMPLE_ITERS=1000 --set GANLAB.CHECKPOINT_ITERS=1000 \
    --set GANLAB.DIGIT_NEGATIVES=4 --set GANLAB.DIGIT_NEGATIVES_D=true
uv run attngan-eval --outdir "$out" --device cpu --count 1000 \
    --metrics rprec,rprec_real,faithful,faithful_real
run="$(ls -d "$out"/*-attngan | tail -1)"
uv run python packages/attngan/bench/digit_probe.py \
    "$(ls "$run"/checkpoints/ckpt-*.pt | tail -1)" --count 500
