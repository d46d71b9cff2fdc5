#!/usr/bin/env bash
# Does a refactor change what training computes? Trains four short runs (raw N2N with a mid-run checkpoint,
# sRGB, R2R fine-tuning of the shipped model, supervised raw) with the code of REV and with the working tree,
# on the built-in data, and compares metrics (all columns but the timings) and every checkpoint byte for byte.
#
#   bash benchmarks/same_as.sh REV        # e.g. the commit before a refactor; prints SAME/DIFF per file
#
# REV is checked out into a temporary git worktree; both sides run with this checkout's Python environment,
# one thread, on the CPU (bit-exact there).
set -euo pipefail
rev=${1:?usage: same_as.sh REV}
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git -C "$repo" worktree add --detach "$work/old" "$rev" >/dev/null 2>&1
export OMP_NUM_THREADS=1
runs() {  # runs ROOT OUT
    local root=$1 out=$2
    cd "$root"
    PYTHONPATH=$root "$py" -m n2n_raw.cli train --mode raw --steps 12 --batch-size 2 --out "$out/raw" --device cpu \
        --log-every 3 --ckpt-every 6 >/dev/null 2>&1
    PYTHONPATH=$root "$py" -m n2n_raw.cli train --mode srgb --steps 8 --batch-size 2 --patch-size 64 \
        --out "$out/srgb" --device cpu --log-every 2 >/dev/null 2>&1
    PYTHONPATH=$root "$py" -m n2n_raw.cli train --mode raw --steps 6 --batch-size 2 --start-from pretrained \
        --target r2r --out "$out/r2r" --device cpu --log-every 2 >/dev/null 2>&1
    PYTHONPATH=$root "$py" -m n2n_raw.cli train --mode raw --steps 6 --batch-size 2 --target supervised \
        --out "$out/supervised" --device cpu --log-every 2 >/dev/null 2>&1
}
runs "$work/old" "$work/a"
runs "$repo" "$work/b"
status=0
for run in raw srgb r2r supervised; do
    # metrics.csv without its timing columns (seconds, crops_per_s)
    if cmp -s <(cut -d, -f1-7 "$work/a/$run/metrics.csv") <(cut -d, -f1-7 "$work/b/$run/metrics.csv"); then
        echo "SAME $run/metrics.csv (losses, lr, Λ)"; else echo "DIFF $run/metrics.csv"; status=1; fi
    for f in "$work/a/$run"/ckpt-*.safetensors; do
        name=$run/$(basename "$f")
        if cmp -s "$f" "$work/b/$name"; then echo "SAME $name"; else echo "DIFF $name"; status=1; fi
    done
done
exit $status
