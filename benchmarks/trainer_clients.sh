#!/usr/bin/env bash
# Trainers load pairsmith's exports as they are: LLaMA-Factory (PyPI, in its own venv) preprocesses
# and trains one LoRA step on the CPU, on a tiny random Qwen2-VL, from
#   1. dataset_dir = the export folder (renders, multi-image and side-by-side), and
#   2. the user's own dataset_dir with the export entries merged into its dataset_info.json
#      (renders and the MED benchmark sample, exported with --absolute-paths).
# Not in CI (it installs LLaMA-Factory 0.9.5 and its pins: transformers<=5.6, datasets<=4.0, ...).
#
#   bash benchmarks/trainer_clients.sh            # WORK=/tmp/... LF_VENV=... to reuse a folder / venv
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/pairsmith-trainer-clients.XXXXXX)}
LF_VENV=${LF_VENV:-$WORK/llamafactory-venv}
PAIRSMITH=${PAIRSMITH:-$ROOT/.venv/bin/pairsmith}
PY=$(dirname "$PAIRSMITH")/python
MED=${MED:-${PAIRSMITH_SHARED_DATA:-$ROOT/../shared/data}/med_bench_sample}
DB=$WORK/db.lance
mkdir -p "$WORK"
echo "== work folder: $WORK"

if [ ! -x "$LF_VENV/bin/llamafactory-cli" ]; then
  echo "== installing LLaMA-Factory 0.9.5 into $LF_VENV"
  python3 -m venv "$LF_VENV"
  "$LF_VENV/bin/pip" install -q --upgrade pip
  "$LF_VENV/bin/pip" install -q "llamafactory==0.9.5" "torch==2.14.1" "torchvision==0.29.1" torchaudio
fi
"$LF_VENV/bin/python" -c "import llamafactory, transformers, datasets; print('== LLaMA-Factory', llamafactory.__version__, '| transformers', transformers.__version__, '| datasets', datasets.__version__)"

echo "== data: a small render and the MED benchmark sample"
rm -rf "$DB" "$WORK"/export-*
"$PAIRSMITH" render --pairs 6 --width 96 --height 72 --samples 2 --max-changes 2 --db "$DB" | tail -1
if [ -f "$MED/MED_bench_sample.json" ]; then
  "$PAIRSMITH" import med-bench --json "$MED/MED_bench_sample.json" --images "$MED/images" --db "$DB" | tail -1
else
  echo "   (no MED sample at $MED: the merged registry gets renders only)"
fi

echo "== exports"
"$PAIRSMITH" export --format sharegpt --db "$DB" --out "$WORK/export-renders" | sed -n 1p
"$PAIRSMITH" export --format sharegpt --db "$DB" --out "$WORK/export-renders-sbs" --layout side-by-side | sed -n 1p
"$PAIRSMITH" export --format sharegpt --db "$DB" --out "$WORK/export-renders-abs" --absolute-paths | sed -n 1p
MERGED=renders_abs
if [ -f "$MED/MED_bench_sample.json" ]; then
  "$PAIRSMITH" export --format sharegpt --db "$DB" --out "$WORK/export-med" --split bench --absolute-paths \
    --dataset-name med_bench | sed -n 1p
  MERGED=renders_abs,med_bench
fi

echo "== the user's own dataset_dir, with the export entries merged into its dataset_info.json"
mkdir -p "$WORK/my_data"
"$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
mine = work / "my_data"
(mine / "own.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "Say hi."},
                                                         {"role": "assistant", "content": "Hi."}]}]))
registry = {"own": {"file_name": "own.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}}}
renders = json.loads((work / "export-renders-abs" / "dataset_info.json").read_text())
registry["renders_abs"] = next(iter(renders.values()))
if (work / "export-med").is_dir():
    registry |= json.loads((work / "export-med" / "dataset_info.json").read_text())
(mine / "dataset_info.json").write_text(json.dumps(registry, indent=2))
print("   entries:", ", ".join(registry))
EOF

echo "== a tiny random Qwen2-VL"
"$PY" -c "from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl; print('  ', build_tiny_qwen2_vl('$WORK/tiny-qwen2-vl'))"

train() {  # name dataset_dir datasets
  local name=$1 dir=$2 sets=$3
  cat > "$WORK/$name.yaml" <<EOF
model_name_or_path: $WORK/tiny-qwen2-vl
trust_remote_code: true
stage: sft
do_train: true
finetuning_type: lora
lora_target: all
dataset_dir: $dir
dataset: $sets
template: qwen2_vl
cutoff_len: 2048
overwrite_cache: true
preprocessing_num_workers: 1
dataloader_num_workers: 0
output_dir: $WORK/out-$name
overwrite_output_dir: true
per_device_train_batch_size: 1
gradient_accumulation_steps: 1
max_steps: 1
logging_steps: 1
learning_rate: 1.0e-4
bf16: false
fp16: false
report_to: none
EOF
  echo "== LLaMA-Factory: $name (dataset_dir=$dir, dataset=$sets)"
  if CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 DISABLE_VERSION_CHECK=1 WANDB_DISABLED=true \
      "$LF_VENV/bin/llamafactory-cli" train "$WORK/$name.yaml" > "$WORK/$name.log" 2>&1; then
    grep -E "Converting format of dataset|Running tokenizer|Num examples|train_loss|'loss'|Skipping|does not exist" \
      "$WORK/$name.log" | sed 's/\r/\n/g' | grep -E "100%|examples|loss|Skipping|does not exist" | sed 's/^/   /' | tail -8
    echo "   $name: trained 1 step (log: $WORK/$name.log)"
  else
    tail -25 "$WORK/$name.log" | sed 's/^/   /'
    echo "   $name: FAILED (log: $WORK/$name.log)"
    return 1
  fi
}

status=0
train renders-in-export "$WORK/export-renders" pairsmith_export-renders || status=1
train side-by-side-in-export "$WORK/export-renders-sbs" pairsmith_export-renders-sbs || status=1
train merged-registry "$WORK/my_data" "own,$MERGED" || status=1
exit $status
