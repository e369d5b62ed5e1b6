#!/usr/bin/env bash
# CI for ganlab: lock check, lint, the README's test command, wheel builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet uv
fi

# Debian's full Fashion-MNIST (used by the loader and FID tests; they skip without it).
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
        || echo "ci: dataset-fashion-mnist not installed; its tests will skip"
fi

# Debian's chromium + chromium-driver for attngan's page test in a real browser (without
# them that test skips and says why).
if ! command -v chromedriver >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) \
        || echo "ci: chromium/chromium-driver not installed; attngan's browser test will skip"
fi

uv sync --locked

# A missing lrgan CPU extension must fail the op tests instead of falling back silently.
export LRGAN_REQUIRE_EXT=1

uv run ruff check .
# The README's test command:
uv run pytest

# The STNM CUDA source must keep compiling even where no GPU runs it (nvcc is installed here).
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then
    CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}" uv run pytest -q -m slow -k cuda_extension_compiles packages/lrgan
fi

# Every package builds a wheel (lrgan compiles its CPU extension here).
uv build --all-packages --quiet -o "$(mktemp -d)"
