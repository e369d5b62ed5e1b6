#!/usr/bin/env bash
# The CPU fidelity run of BENCHMARKS.md (## attngan): embedded digit scenes, the `tiny` image
# backbone trained end to end by DAMSM (15 epochs), a small G/D (GF = DF = 16, R_NUM 1) with
# LAMBDA 1 (with a trained DAMSM, the bird preset's LAMBDA 5 lets the DAMSM gradient swamp the
# adversarial one: G drew full-canvas textures and D won outright in a 500-step trial).
# About 8 min (DAMSM) + 22 min (GAN) + 5 min (eval) at one torch thread on a shared 2-core CPU.
# Usage: packages/attngan/bench/digits_cpu.sh [OUTDIR]
set -euo pipefail
out="${1:-output/digits-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
uv run attngan-pretrain-damsm --outdir "$out" --device cpu --image_encoder tiny \
    --set TRAIN.MAX_EPOCH=15 --set GANLAB.SAMPLE_ITERS=625 --set GANLAB.CHECKPOINT_ITERS=625
uv run attngan-train --outdir "$out" --device cpu --max_iters 4000 \
    --set GAN.GF_DIM=16 --set GAN.DF_DIM=16 --set GAN.R_NUM=1 --set TRAIN.BATCH_SIZE=16 \
    --set TRAIN.SMOOTH.LAMBDA=1.0 \
    --set GANLAB.EMA_DECAY=0.995 --set GANLAB.SAMPLE_ITERS=250 --set GANLAB.CHECKPOINT_ITERS=250
uv run attngan-eval --outdir "$out" --device cpu --count 1000 \
    --metrics rprec,rprec_real,faithful,faithful_real
uv run attngan-eval --outdir "$out" --device cpu --count 300 --metrics fid
uv run attngan-sample --outdir "$out" --device cpu --attention \
    --caption "a large red seven in the upper left" \
    --caption "two digits : a small blue 2 beside a large green 5"
