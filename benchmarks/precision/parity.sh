#!/usr/bin/env bash
# bf16-mixed against float32 at equal steps: validation BLEU (greedy) and loss of transformer-small
# and lstm-small on Multi30k de-en, seeds 1-3, one thread per run. Resumable: a finished run
# (its metrics.csv has a val/bleu row) is skipped; rerun the script to complete the grid.
#   benchmarks/precision/parity.sh MODEL [STEPS]    (MODEL: transformer-small | lstm-small)
set -euo pipefail
model=$1 steps=${2:-400}
out=runs/parity
for seed in 1 2 3; do
  for precision in 32-true bf16-mixed; do
    dir=$out/$model-$precision-s$seed
    if grep -qs "val/bleu" "$dir"/fit/*/metrics.csv; then
      echo "done: $dir"; continue
    fi
    rm -rf "$dir"
    OMP_NUM_THREADS=1 WANDB_MODE=disabled mt fit --config configs/$model.yaml --run_dir "$dir" \
      --seed_everything $seed --data.seed $seed --trainer.precision $precision \
      --trainer.max_steps $steps --trainer.val_check_interval $steps --trainer.max_epochs -1 --trainer.check_val_every_n_epoch null \
      > "$dir.log" 2>&1 || { echo "failed: $dir (see $dir.log)"; exit 1; }
    echo "finished: $dir"
  done
done
