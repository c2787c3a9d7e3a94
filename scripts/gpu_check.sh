#!/usr/bin/env bash
# The prepared GPU check: what only a machine with a CUDA GPU can show, in under 10 minutes on one GPU.
#
#   scripts/gpu_check.sh                 # from the repository root, the project's Python first on PATH
#   GPU_CHECK_OUT=/tmp/gpu-check scripts/gpu_check.sh
#
# 1. the CUDA tests: tests/test_acmix.py (ACmix on CUDA against the CPU, every dtype) and the fast
#    part of tests/test_gpus.py (the GPU share rule, training memory, the out-of-memory retry);
# 2. ACmix against a 3x3 conv on the GPU: time and peak memory (benchmarks/acmix_op.py, its two
#    shapes, forward and forward+backward);
# 3. a small search with several trials per GPU (--gpus-per-trial auto: each trial's share from its
#    memory), nvidia-smi sampled every second meanwhile, then its placement and memory table: per
#    trial its GPU, device, estimated and measured memory, and how many trials on its GPU overlapped it.
#
# Each step has its own time limit; the last line sums up (exit 1 if any step failed). Without a
# GPU it prints one line and exits 0. What it writes goes to $GPU_CHECK_OUT (default: $OUT when the
# device runner sets it, else a temp folder).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no GPU (torch.cuda.is_available() is False here): skipped"
    exit 0
fi

OUTDIR=${GPU_CHECK_OUT:-${OUT:-$(mktemp -d)}}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=()
step() {  # step NAME SECONDS COMMAND...: run it with a time limit, its output also in $OUTDIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUTDIR/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc in $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'

step cuda-tests 200 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/test_acmix.py tests/test_gpus.py

step acmix-vs-conv 120 "$PY" benchmarks/acmix_op.py --device cuda --repeats 5 --warmup 2

# several trials per GPU: small networks, auto shares, as many at once as the CPUs allow
RUN="$OUTDIR/gpu-search"
rm -rf "$RUN"
SMI="$OUTDIR/nvidia-smi.csv"
nvidia-smi --query-compute-apps=timestamp,pid,gpu_uuid,used_memory --format=csv,noheader,nounits -l 1 >"$SMI" 2>/dev/null &
smi=$!
step search 220 "$PY" -m nas.search --space search_spaces/digits.yaml --budget 12 --epochs 2 --subset 400 \
    --race 1 --sampler random --gpus-per-trial auto --cpus-per-trial 1 --max-concurrent 8 --quiet \
    --results-dir "$OUTDIR" --name gpu-search
kill "$smi" 2>/dev/null
wait "$smi" 2>/dev/null

step placement 60 "$PY" - "$RUN" "$SMI" <<'EOF'
"""The search's placement and memory table: per trial its GPU, device, memory (the estimate it
was placed by, and the largest a GPU process had in nvidia-smi's samples while it ran), and how many
trials on its GPU overlapped it in time (itself included)."""
import csv
import sys
from datetime import datetime
from pathlib import Path

from nas.run.folder import RunFolder

run, smi = RunFolder(sys.argv[1]), Path(sys.argv[2])
records = [r for r in run.trials() if r.started_at and r.finished_at]
if not records:
    sys.exit("no trial with start and finish times in " + str(run.trials_path))
span = {r.number: (datetime.fromisoformat(r.started_at), datetime.fromisoformat(r.finished_at)) for r in records}
samples = []  # (time, MiB) of every GPU process nvidia-smi saw
for row in csv.reader(smi.read_text().splitlines() if smi.exists() else []):
    try:
        samples.append((datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f"), float(row[3])))
    except (ValueError, IndexError):
        pass
tz = next(iter(span.values()))[0].tzinfo
print(f"{'trial':>5} {'arch':12} {'status':9} {'gpu':4} {'device':7} {'est. MiB':>8} {'seen MiB':>8} {'overlap':>7} {'s':>6}")
most = 0
for r in records:
    start, end = span[r.number]
    gpu = ",".join(r.gpu_ids) or "-"
    overlap = sum(1 for o in records if set(o.gpu_ids) & set(r.gpu_ids) and span[o.number][0] < end and start < span[o.number][1])
    most = max(most, overlap)
    seen = [mib for t, mib in samples if start <= t.replace(tzinfo=tz) <= end]
    mem = f"{r.memory_mb:.0f}" if r.memory_mb is not None else "-"
    print(f"{r.number:>5} {r.arch_id:12} {r.status:9} {gpu:4} {r.device or '-':7} {mem:>8} "
          f"{max(seen) if seen else '-':>8} {overlap:>7} {r.seconds:>6.1f}")
print(f"{len(records)} trials; up to {most} overlapping on one GPU; {sum(r.status == 'complete' for r in records)} complete")
if most < 2:
    sys.exit("no two trials overlapped on a GPU: fractional placement not shown")
EOF

if [ ${#failed[@]} -eq 0 ]; then
    echo "gpu_check: all steps passed (logs in $OUTDIR)"
else
    echo "gpu_check: failed: ${failed[*]} (logs in $OUTDIR)"
    exit 1
fi
