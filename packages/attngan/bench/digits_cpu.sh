#!/usr/bin/env bash
# The CPU fidelity run of BENCHMARKS.md (## attngan): embedded digit scenes, tiny image
# backbone, a small G/D. About 10 min (DAMSM) + 46 min (GAN) + 5 min (eval) on a shared
# 2-core CPU.  Usage: packages/attngan/bench/digits_cpu.sh [OUTDIR]
set -euo pipefail
out="${1:-output/digits-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
uv run attngan-pretrain-damsm --outdir "$out" --device cpu --image_encoder tiny \
    --set TRAIN.MAX_EPOCH=5 --set GANLAB.SAMPLE_ITERS=125 --set GANLAB.CHECKPOINT_ITERS=125
uv run attngan-train --outdir "$out" --device cpu --max_iters 2250 \
    --set GAN.GF_DIM=16 --set GAN.DF_DIM=16 --set GAN.R_NUM=1 --set TRAIN.BATCH_SIZE=16 \
    --set GANLAB.EMA_DECAY=0.995 --set GANLAB.SAMPLE_ITERS=250 --set GANLAB.CHECKPOINT_ITERS=250
uv run attngan-eval --outdir "$out" --device cpu --count 1000 \
    --metrics rprec,rprec_real,faithful
uv run attngan-eval --outdir "$out" --device cpu --count 300 --metrics fid
uv run attngan-sample --outdir "$out" --device cpu --attention \
    --caption "a large red seven in the upper left" \
    --caption "two digits : a small blue 2 beside a large green 5"
