#!/usr/bin/env bash
# Training tokens/s of transformer-small (the config's precision) on Multi30k de-en for each
# combination of torch intra-op threads and data-loader workers: 80 steps, no validation; the
# mean of the throughput monitor's tokens/s after step 20. Writes runs/threads/summary.tsv.
#   benchmarks/precision/threads.sh [CONFIG] [THREADS...]
set -euo pipefail
config=${1:-configs/transformer-small.yaml}; shift || true
threads=${*:-1 2}
out=runs/threads; mkdir -p $out
printf "threads\tworkers\ttokens_per_s\tsteps\n" > $out/summary.tsv
for t in $threads; do
  for w in 0 1; do
    dir=$out/t$t-w$w; rm -rf "$dir"
    OMP_NUM_THREADS=$t WANDB_MODE=disabled mt fit --config "$config" --run_dir "$dir" \
      --trainer.max_steps 80 --trainer.limit_val_batches 0 --data.num_workers $w > "$dir.log" 2>&1
    python3 - "$dir" "$t" "$w" >> $out/summary.tsv <<'PY'
import csv, glob, sys
rows = [r for f in glob.glob(f"{sys.argv[1]}/fit/**/metrics.csv", recursive=True) for r in csv.DictReader(open(f))]
tps = [float(r["train/tokens_per_sec"]) for r in rows if r.get("train/tokens_per_sec") and int(r["step"]) > 20]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sum(tps) / len(tps):.0f}\t{len(tps)}")
PY
  done
done
cat $out/summary.tsv
