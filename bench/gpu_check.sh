#!/usr/bin/env bash
# The GPU check for a lent machine (one H100): one prepared script, < 8 minutes, every figure
# written under $OUT (a new /tmp/hccr-gpu-check-* folder when $OUT is unset).
#
#   bash bench/gpu_check.sh                      # on the GPU machine, from the repo root
#   SLOTS=4 ARCHIVE=/path/chinese-mnist.zip BUDGET_S=440 bash bench/gpu_check.sh
#   GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh    # CPU, tiny everything: checks the script itself
#
# Steps (each capped so the whole script stays inside BUDGET_S, default 440 s):
#   1. nvidia-smi and torch's view of the device
#   2. the CUDA path: a 1-epoch tiny `hccr.training.train` on synthetic data with --device cuda, checking
#      that train.json says bfloat16-autocast on the GPU; then the same with 4 ranks (gloo)
#   3. bench_models.py on CUDA: fp32 and bf16 autocast + channels_last
#   4. bench_loader.py with the uint8 array resident on the GPU
#   5. the study at its settings (efficientnet + inception_gru x small/medium/large and the
#      18 sweep cells) through Snakemake with SLOTS slots per GPU; what finishes within the
#      remaining time is reported per job (bench_quick_profile.py --timeout)
#   6. bench_models.py with torch.compile (bf16 + channels_last), in the time left
# Step 2 also runs a 4-rank job on the one GPU, as the sweep's 4-GPU cells run there.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$(mktemp -d /tmp/hccr-gpu-check-XXXXXX)}"
WORK="$(mktemp -d /tmp/hccr-gpu-work-XXXXXX)"  # bulk (arrays, checkpoints) stays out of $OUT
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
BUDGET_S="${BUDGET_S:-440}"
SLOTS="${SLOTS:-4}"
SMOKE="${GPU_CHECK_SMOKE:-0}"
ARCHIVE="${ARCHIVE:-${HCCR_REAL_DATA:-$ROOT/../shared/data/chinese-mnist.zip}}"
[ -f "$ARCHIVE" ] || ARCHIVE="$ROOT/shared/data/chinese-mnist.zip"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY="${PYTHON:-python}"
START=$SECONDS
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

DEVICE=cuda
if [ "$SMOKE" = 1 ]; then DEVICE=cpu; fi

note() { echo "[gpu_check +$((SECONDS - START))s] $*" | tee -a "$SUMMARY"; }
# Seconds a step may use: its own cap, never past the budget minus a reserve for the rest.
allow() {
    local cap=$1 reserve=${2:-0} left
    left=$((BUDGET_S - (SECONDS - START) - reserve))
    [ "$left" -lt "$cap" ] && cap=$left
    [ "$cap" -lt 10 ] && cap=10
    echo "$cap"
}
step() { # step NAME CAP RESERVE -- command...
    local name=$1 cap rc
    cap=$(allow "$2" "$3")
    shift 4
    note "$name: start (limit ${cap}s)"
    timeout --signal=TERM --kill-after=15 "$cap" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
    rc=$?
    note "$name: exit $rc"
    if [ "$rc" = 124 ]; then note "$name: TIMED OUT after ${cap}s"; fi
    return 0
}

# 1. the device -----------------------------------------------------------------------------
{ nvidia-smi || echo "nvidia-smi: not available"; } >"$OUT/nvidia-smi.txt" 2>&1
"$PY" - >"$OUT/torch.txt" 2>&1 <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, f"{p.total_memory / 2**30:.1f} GiB", "SMs", p.multi_processor_count, "bf16", torch.cuda.is_bf16_supported())
EOF
note "device: $(head -2 "$OUT/torch.txt" | tr '\n' ' ')"
if [ "$SMOKE" != 1 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    note "no CUDA device: stopping (GPU_CHECK_SMOKE=1 runs the CPU smoke version)"
    exit 1
fi

# 2. the CUDA training path on tiny synthetic data ------------------------------------------
TINY="$WORK/tiny"
rm -rf "$TINY" && mkdir -p "$TINY"
step tiny_train 120 330 -- bash -c "
set -e
$PY -m hccr.data.fetch --source synthetic --out '$TINY/raw' --synthetic-writers 4 --synthetic-samples 2
$PY -m hccr.data.index --raw '$TINY/raw' --out '$TINY/index.csv'
$PY -m hccr.data.resize --raw '$TINY/raw' --index '$TINY/index.csv' --size 64 --filter bilinear --out '$TINY/images_64.npy'
$PY - '$TINY' <<'EOF'
import json, sys, pandas as pd, yaml
tiny = sys.argv[1]
index = pd.read_csv(f'{tiny}/index.csv')
# writer 1 validates, the rest train
pd.DataFrame({'id': index['id'], 'role': ['val' if w == index['writer'].min() else 'train' for w in index['writer']]}).to_csv(f'{tiny}/split.csv', index=False)
cfg = yaml.safe_load(open('params.yaml'))['model']['cnn']
cfg.update(batch_size=32, phases=[{'name': 'train', 'epochs': 1, 'lr': 1e-3, 'freeze': 'none'}])
cfg['scratch_phases'] = cfg['phases']
json.dump(cfg, open(f'{tiny}/cnn.json', 'w'))
EOF
$PY -m hccr.training.train --model cnn --size small --images '$TINY/images_64.npy' --index '$TINY/index.csv' \
    --split '$TINY/split.csv' --config-json '$TINY/cnn.json' --seed 1 --threads 2 --device $DEVICE --out '$TINY/run'
$PY -c \"import json; s = json.load(open('$TINY/run/train.json')); print('device', s['device'], 'precision', s['precision'], 'images/s', s['images_per_second'])\"
# a 4-GPU sweep cell on this machine: 4 ranks sharing its device(s) (gloo), one slot each
$PY -c \"import json; c = json.load(open('$TINY/cnn.json')); c['gpus'] = 4; json.dump(c, open('$TINY/cnn4.json', 'w'))\"
$PY -m hccr.training.launch --gpus 4 --slots-per-gpu 4 --lock-dir '$TINY/locks' -- $PY -m hccr.training.train --model cnn --size small \
    --images '$TINY/images_64.npy' --index '$TINY/index.csv' --split '$TINY/split.csv' --config-json '$TINY/cnn4.json' \
    --seed 1 --threads 4 --device $DEVICE --out '$TINY/run4'
$PY -c \"import json; s = json.load(open('$TINY/run4/train.json')); print('4 ranks: world', s['world_size'], 'backend', s['backend'], 'ranks/device', s['ranks_per_device'], 'device', s['device'], 'images/s', s['images_per_second'])\"
"
note "tiny train: $(tail -2 "$OUT/tiny_train.txt" | tr '\n' ' ')"

# 3. models on CUDA, with and without torch.compile -----------------------------------------
if [ "$SMOKE" = 1 ]; then
    MODEL_ARGS=(--smoke --device cpu --variants fp32)
    COMPILE_ARGS=(--smoke --device cpu --variants fp32)
else
    MODEL_ARGS=(--device cuda --variants fp32,bf16-cl --warmup 3 --steps 30 --budget 5)
    # cheapest compile first: a cut-off run still reports the models that finished
    COMPILE_ARGS=(--device cuda --variants bf16-cl-compile --warmup 3 --steps 30 --budget 5
                  --models cnn@64,efficientnet@64,inception_gru@75,inception_gru@299)
fi
step models 100 300 -- "$PY" bench/bench_models.py "${MODEL_ARGS[@]}" --json "$OUT/models.json"

# 4. the loader with the array on the GPU ---------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    LOADER_ARGS=(--smoke --device cpu)
elif [ -f "$ARCHIVE" ]; then
    LOADER_ARGS=(--device cuda --archive "$ARCHIVE" --batches 100 --workers 8 --step-batches 20 --step-budget 10)
else
    LOADER_ARGS=(--device cuda --synthetic 30 --batches 100 --workers 8 --step-batches 20 --step-budget 10)
fi
step loader 70 230 -- "$PY" bench/bench_loader.py "${LOADER_ARGS[@]}"

# 5. the study at its settings, SLOTS jobs per GPU ------------------------------------------
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
[ "$NGPU" -ge 1 ] 2>/dev/null || NGPU=1
if [ "$SMOKE" = 1 ]; then
    SOURCE=synthetic
    STUDY_ARGS=(--smoke --cores 2 --dest "$WORK/study")
else
    if [ -f "$ARCHIVE" ]; then SOURCE="$ARCHIVE"; else SOURCE=synthetic; fi
    cat >"$OUT/study.yaml" <<EOF
# The study's settings (params.yaml defaults) on one machine: its 6 runs and all 18 sweep cells
# (the 4-GPU cells as 4 ranks sharing this machine's GPUs, one slot each).
data_source: $SOURCE
models: [efficientnet, inception_gru]
sizes: [small, medium, large]
resize: {sizes: [64, 299]}
sweep: {enabled: true}
resources: {slots_per_gpu: $SLOTS, train_threads: 2}
model:
  efficientnet: {pretrained: none}
  inception_gru: {pretrained: none}
EOF
    STUDY_ARGS=(--profile workflow/profiles/local --cores "$(nproc)" --archive "$SOURCE" --dest "$WORK/study"
                -- --configfile "$OUT/study.yaml" --resources "gpu=$((NGPU * SLOTS))")
fi
# The study gets what is left but 100 s, kept for the torch.compile step after it.
LEFT=$(allow 100000 100)
STOP=$((LEFT - 45)); [ "$STOP" -lt 10 ] && STOP=10
step study "$LEFT" 0 -- "$PY" bench/bench_quick_profile.py --timeout "$STOP" --json "$OUT/study.json" "${STUDY_ARGS[@]}"
# Keep the logs, benchmark files and metrics; arrays and checkpoints stay in $WORK.
mkdir -p "$OUT/study"
cp -r "$WORK/study/logs" "$OUT/study/" 2>/dev/null
cp -r "$WORK/study/reports/metrics" "$OUT/study/" 2>/dev/null
find "$WORK/study/models" -name train.json 2>/dev/null | while read -r f; do
    dest="$OUT/study/${f#"$WORK/study/"}"; mkdir -p "$(dirname "$dest")"; cp "$f" "$dest"
done

# 6. torch.compile: last, it may take minutes to compile four models ------------------------
step models_compile 150 15 -- "$PY" bench/bench_models.py "${COMPILE_ARGS[@]}" --json "$OUT/models_compile.json"

note "done in $((SECONDS - START)) s; figures in $OUT"
for f in models models_compile loader study; do
    echo "===== $f" >>"$SUMMARY"
    grep -v '^#' "$OUT/$f.txt" >>"$SUMMARY" 2>/dev/null
done
cat "$SUMMARY"
