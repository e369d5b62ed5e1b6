#!/usr/bin/env bash
# The CPU recipe of the lrgan fidelity issue: LR-GAN (T = 3, full and legacy pose gradient) and
# the DCGAN baseline (T = 1) on MNIST-TWO at 32 px, ngf = ndf = 32, batch 64, 3,800 iterations,
# then the judge's layer metrics and FID (1,000 samples vs 1,000 fresh real canvases).
# Measured 2026-11-30 on the shared 2-core CPU, one thread per run (figures: ../README.md).
# The 2026-11-30 runs were stopped and resumed (--resume, larger --max_iters) on the way:
# 1,200 -> 3,000 -> 3,800 iterations; a resume is exact, so one straight run is the same.
set -euo pipefail
out=${1:-runs/recipe32}
common=(--dataset mnist-two --imageSize 32 --ngf 32 --ndf 32 --maxobjscale 2 --epoch_size 12800
        --niter 100 --max_iters 3800 --manualSeed 1 --device cpu --judge_samples 0)
export OMP_NUM_THREADS=1
uv run lrgan-train "${common[@]}" --ntimestep 3 --outf "$out/full" &
uv run lrgan-train "${common[@]}" --ntimestep 3 --legacy_grad --session 2 --outf "$out/legacy" &
uv run lrgan-train "${common[@]}" --ntimestep 1 --session 3 --outf "$out/dcgan" &
wait
for run in "$out"/full/*/ "$out"/legacy/*/ "$out"/dcgan/*/; do
    uv run python packages/lrgan/bench/fidelity.py "$run" --fid_samples 1000 --judge_samples 1000
done
