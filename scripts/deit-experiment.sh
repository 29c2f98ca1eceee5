#!/usr/bin/env bash
# Does DeiT distillation pay at small scale? For each seed, trains vit-tiny without a teacher and
# deit-tiny distilled from TEACHER (hard: the teacher's argmax; soft: KL at T 3, alpha 0.1, the
# paper's settings, unless SOFT_T / SOFT_ALPHA say otherwise) on the same budget, then prints
# each run's test accuracy, the means, and each distilled kind's mean gain over the ViT alone.
#
# Usage: scripts/deit-experiment.sh [TEACHER] [SEEDS...]
#   TEACHER  default runs/results-resnet20/model.safetensors
#   SEEDS    default 1 2 3
# Environment (defaults in brackets):
#   EPOCHS [2]  MAX_IMAGES [15000] (training images per epoch; "all" = the whole split)
#   DEVICE [flex] (e.g. wgpu or cuda in a GPU build)  OUT [runs/deit-experiment]
#   KINDS ["vit deit-hard deit-soft"]  PARALLEL [1] (runs at once). On a 2-core CPU,
#   RAYON_NUM_THREADS=1 PARALLEL=2 trains about twice the images per second of one run on both
#   cores (these models' batches are too small to keep two threads busy).
#   AUG [none] ("preset" keeps the ViT preset's crop, flip and RandAugment; the teacher then runs
#   on every augmented batch instead of once per image)
#   SOFT_T [3]  SOFT_ALPHA [0.1] (temperature and teacher weight of the soft runs)
#   TRAIN_ARGS [] (more options for every run, e.g. "--val-fraction 0" to train on a subset of
#   all 60,000 images and skip the per-epoch validation)
#   KEEN [the release build of scripts/env.sh]
# Writes OUT/KIND-SEED/ run folders and OUT/summary.jsonl (one line per run). A rerun skips
# finished runs and resumes cut ones from their last epoch's checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
teacher=${1:-runs/results-resnet20/model.safetensors}
shift $(( $# < 1 ? $# : 1 ))
if [ $# -eq 0 ]; then seeds=(1 2 3); else seeds=("$@"); fi
KEEN_BIN=${KEEN:-$KEEN_BIN}
epochs=${EPOCHS:-2}
max_images=${MAX_IMAGES:-15000}
device=${DEVICE:-flex}
out=${OUT:-runs/deit-experiment}
kinds=(${KINDS:-vit deit-hard deit-soft})
parallel=${PARALLEL:-1}
mkdir -p "$out"

common=(--epochs "$epochs" --device "$device" --no-progress)
[ "$max_images" = all ] || common+=(--max-train-images "$max_images")
[ "${AUG:-none}" = preset ] || common+=(--crop-padding 0 --hflip false --randaugment off)
read -r -a extra <<< "${TRAIN_ARGS:-}"
common+=("${extra[@]}")

run_one() {
  local kind=$1 seed=$2 dir="$out/$1-$2"
  local run=("${common[@]}" --seed "$seed" --out "$dir" $(resume_flag "$dir"))
  case $kind in
    vit) "$KEEN_BIN" train --model vit-tiny "${run[@]}" ;;
    deit-hard) "$KEEN_BIN" distill --teacher "$teacher" --model deit-tiny --deit hard "${run[@]}" ;;
    deit-soft) "$KEEN_BIN" distill --teacher "$teacher" --model deit-tiny --deit soft \
                 --temperature "${SOFT_T:-3}" --alpha "${SOFT_ALPHA:-0.1}" "${run[@]}" ;;
    *) echo "unknown kind $kind" >&2; return 2 ;;
  esac >> "$dir.log" 2>&1
}

# The teacher's logits are computed once (no augmentation) and found by sibling runs: the first
# distillation runs alone unless a sibling folder holds them already.
if [ "${AUG:-none}" != preset ] && [[ " ${kinds[*]} " == *" deit-"* ]] \
   && ! ls "$out"/*/teacher-logits.bin > /dev/null 2>&1; then
  first=$(for k in "${kinds[@]}"; do [[ $k == deit-* ]] && echo "$k" && break; done)
  run_one "$first" "${seeds[0]}"
fi

jobs_running=0
for seed in "${seeds[@]}"; do
  for kind in "${kinds[@]}"; do
    [ -f "$out/$kind-$seed/eval.json" ] && continue
    run_one "$kind" "$seed" &
    jobs_running=$((jobs_running + 1))
    if [ "$jobs_running" -ge "$parallel" ]; then
      wait -n || true
      jobs_running=$((jobs_running - 1))
    fi
  done
done
wait || true

: > "$out/summary.jsonl"
for seed in "${seeds[@]}"; do
  for kind in "${kinds[@]}"; do
    f="$out/$kind-$seed/eval.json"
    [ -f "$f" ] || { echo "$kind seed $seed: no result (see $out/$kind-$seed.log)" >&2; continue; }
    acc=$(python3 -c "import json;print(json.load(open('$f'))['accuracy'])")
    echo "{\"kind\":\"$kind\",\"seed\":$seed,\"epochs\":$epochs,\"max_train_images\":\"$max_images\",\"test_accuracy\":$acc}" >> "$out/summary.jsonl"
  done
done
python3 - "$out/summary.jsonl" <<'EOF'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
for kind in dict.fromkeys(r["kind"] for r in rows):
    accs = [100 * r["test_accuracy"] for r in rows if r["kind"] == kind]
    spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
    print(f"{kind:10s} mean {statistics.mean(accs):.2f}%{spread} over {len(accs)} seed(s): "
          + ", ".join(f"{a:.2f}" for a in accs))
# Each distilled kind against the ViT alone, over the seeds both finished: the DeiT gain.
vit = {r["seed"]: 100 * r["test_accuracy"] for r in rows if r["kind"] == "vit"}
for kind in dict.fromkeys(r["kind"] for r in rows if r["kind"] != "vit"):
    gains = [100 * r["test_accuracy"] - vit[r["seed"]] for r in rows
             if r["kind"] == kind and r["seed"] in vit]
    if gains:
        print(f"{kind:10s} vs vit: {statistics.mean(gains):+.2f} points over {len(gains)} seed(s): "
              + ", ".join(f"{g:+.2f}" for g in gains))
EOF
