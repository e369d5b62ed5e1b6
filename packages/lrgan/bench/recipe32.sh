#!/usr/bin/env bash
# The CPU recipe of the lrgan fidelity issue: LR-GAN (T = 3) and the DCGAN baseline (T = 1) on
# MNIST-TWO at 32 px, ngf = ndf = 32, batch 64: LR-GAN 16,000 iterations (~60 min alone on a
# 2-core machine with two threads), DCGAN as many as fit the same time (DCGAN_ITERS below),
# then the judge's layer metrics and FID of the
# checkpoints at 4,000-iteration steps (1,000 judged samples; FID of 500 samples against 500
# fresh real canvases). Measured 2026-11-30 (figures: ../README.md, "Measured").
# The learning rate falls linearly to 0 from iteration DECAY_START (default 8,000: measured
# 2026-11-30, evening) and each 200-iteration epoch judges 200 samples, keeping the best-judged
# epoch as models/best_judged.pt (measured below on 1,000 other samples). DECAY_START= (empty)
# runs the original's constant learning rate without the per-epoch judge (the first 16,000-
# iteration run, and the DCGAN figures).
# The DCGAN baseline gets LR-GAN's wall time: DCGAN_ITERS (default 2 x ITERS = 32,000; it runs
# at ~9 it/s alone with two threads where LR-GAN runs at ~4.4), its decay starting half-way
# (measured 2026-11-30, night; the first DCGAN figures stopped at 12,200 iterations).
# LEGACY=1 adds the run with the 2017 kernel's pose gradient (--legacy_grad).
# The first (3,800-iteration) recipe of 2026-11-30 ran the three runs side by side with
# OMP_NUM_THREADS=1 and --max_iters 3800.
set -euo pipefail
out=${1:-runs/recipe32}
iters=${ITERS:-16000}
dc_iters=${DCGAN_ITERS:-$((2 * iters))}
base=(--dataset mnist-two --imageSize 32 --ngf 32 --ndf 32 --maxobjscale 2 --epoch_size 12800
      --niter 1000 --manualSeed 1 --device cpu --judge_samples 0)
common=("${base[@]}" --max_iters "$iters")
dcgan=("${base[@]}" --max_iters "$dc_iters")
decay=${DECAY_START-8000}
if [[ -n "$decay" ]]; then
    common+=(--lr_decay_start "$decay" --judge_samples 200)
    dcgan+=(--lr_decay_start "$((decay * dc_iters / iters))")
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# lrgan-train keeps the newest three checkpoints; keep every 4,000th for the measurements.
keep() { mkdir -p "$2"; while sleep 20; do cp -n "$1"/*/models/*-0{04,08,12,16,24,32}000.pt "$2"/ 2>/dev/null || true; done; }
keep "$out/lrgan" "$out/keep-lrgan" & keeper=$!
uv run lrgan-train "${common[@]}" --ntimestep 3 --outf "$out/lrgan"
if [[ "${LEGACY:-0}" == 1 ]]; then
    uv run lrgan-train "${common[@]}" --ntimestep 3 --legacy_grad --session 2 --outf "$out/legacy"
fi
kill $keeper
keep "$out/dcgan" "$out/keep-dcgan" & keeper=$!
uv run lrgan-train "${dcgan[@]}" --ntimestep 1 --session 3 --outf "$out/dcgan"
kill $keeper
cp -n "$out"/lrgan/*/models/*.pt "$out/keep-lrgan/"; cp -n "$out"/dcgan/*/models/*.pt "$out/keep-dcgan/"
fidelity=packages/lrgan/bench/fidelity.py
uv run python $fidelity "$out"/keep-lrgan/*.pt --fid_samples 0 --judge_samples 1000
if [[ -n "$decay" ]]; then  # the epoch picked on the per-epoch samples, measured on others
    uv run python $fidelity "$out"/lrgan/*/models/best_judged.pt --seed 7 --fid_samples 500 \
        --judge_samples 1000
fi
uv run python $fidelity "$out"/keep-lrgan/*-0{08,12,16}000.pt "$out"/keep-dcgan/*-0{08,16,24,32}000.pt \
    --fid_samples 500 --judge_samples 0
