#!/usr/bin/env bash
# Issue #14 item 5, "where is the digit word lost?" (README "Measured", "Where the digit word
# is lost"): the DAMSM of digits_cpu.sh, then bench/digit_chain.py on it (link 1: text and
# image encoders), on G's first stage trained alone (TREE.BRANCH_NUM 1, one 64 px stage;
# links 2-3) and on the 2-stage (32 -> 64 px) recipe of digits_cpu.sh (links 2-4), both
# ITERS iterations. Run end to end on 2026-11-30 (evening): 55 min at one torch thread next to
# two other one-thread jobs on a 2-core CPU (DAMSM 16 min, one-stage G 11, 2-stage G 14, probes
# ~1 min each); results in ../README.md, "Where the digit word is lost".
# Usage: packages/attngan/bench/digit_chain.sh [OUTDIR] [ITERS]
set -euo pipefail
out="${1:-output/digit-chain}"
iters="${2:-2000}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
chain=packages/attngan/bench/digit_chain.py
figures=packages/attngan/bench/figures
gan=(--device cpu --max_iters "$iters"
     --set GAN.GF_DIM=16 --set GAN.DF_DIM=16 --set GAN.R_NUM=1 --set TRAIN.BATCH_SIZE=16
     --set TRAIN.SMOOTH.LAMBDA=1.0 --set GANLAB.EMA_DECAY=0.995
     --set GANLAB.SAMPLE_ITERS=500 --set GANLAB.CHECKPOINT_ITERS=250)

# 1. the DAMSM (the first command of digits_cpu.sh), and link 1 alone
uv run attngan-pretrain-damsm --outdir "$out" --device cpu --image_encoder tiny \
    --set TRAIN.MAX_EPOCH=15 --set GANLAB.SAMPLE_ITERS=625 --set GANLAB.CHECKPOINT_ITERS=625
damsm="$(ls -d "$out"/*-damsm | tail -1)/damsm.pt"
uv run python "$chain" --damsm "$damsm" | tee "$figures/digit_chain_damsm.json"

# 2-3. G's first stage alone: one 64 px stage (no attention stage, so no word features)
uv run attngan-train --outdir "$out/stage1" --NET_E "$damsm" "${gan[@]}" \
    --set TREE.BRANCH_NUM=1 --set TREE.BASE_SIZE=64
g1="$(ls -d "$out"/stage1/*-attngan | tail -1)/netG.pt"
uv run python "$chain" --damsm "$damsm" --netG "$g1" | tee "$figures/digit_chain_stage1.json"
captions=()
for name in zero one two three four five six seven eight nine; do
    captions+=(--caption "a large white $name in the centre")
done
uv run attngan-sample --netG "$g1" --device cpu --save_dir "$out/stage1-words" "${captions[@]}"
cp "$out/stage1-words/grid.png" "$figures/digit_chain_stage1_digit_words.png"

# 4. the 2-stage recipe of digits_cpu.sh (digits_attn2: 32 px, then an attention stage to 64 px)
uv run attngan-train --outdir "$out/attn2" --NET_E "$damsm" "${gan[@]}"
g2="$(ls -d "$out"/attn2/*-attngan | tail -1)/netG.pt"
uv run python "$chain" --damsm "$damsm" --netG "$g2" | tee "$figures/digit_chain_attn2.json"
