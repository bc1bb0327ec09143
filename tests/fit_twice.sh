#!/usr/bin/env bash
# Two `mt fit` with the same config never touch each other's files; `mt test` of the first run's
# best checkpoint works and leaves the fit's metrics alone.
#
#   tests/fit_twice.sh MT CORPUS WORKDIR
#
# MT: the installed `mt` executable; CORPUS: a tiny corpus ({train,val,test_2016_flickr}.{de,en},
# tests/conftest.py writes one); WORKDIR: an empty folder (the runs go to WORKDIR/runs). Run by
# tests/test_cli.py (so by `make test`). Prints `fit_twice: ok` and exits 0, or says what failed.
set -euo pipefail
MT=${1:?usage: fit_twice.sh MT CORPUS WORKDIR}
CORPUS=${2:?usage: fit_twice.sh MT CORPUS WORKDIR}
WORK=${3:?usage: fit_twice.sh MT CORPUS WORKDIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "fit_twice: FAILED: $*" >&2; exit 1; }

cd "$WORK"
# A tiny budget: the shipped transformer-small config with a tiny model, 4 steps.
cat > tiny.yaml <<YAML
trainer:
  max_steps: 4
  val_check_interval: 2
  limit_val_batches: 2
  enable_progress_bar: false
  enable_model_summary: false
model:
  init_args: {d_model: 32, n_heads: 2, encoder_layers: 1, decoder_layers: 1, ffn_dim: 64}
data: {data_dir: "$CORPUS", vocab_size: 300, max_tokens: 512, num_workers: 0}
YAML
CONFIGS=(--config "$ROOT/configs/transformer-small.yaml" --config tiny.yaml)
FIRST=runs/transformer-small/version_0
SECOND=runs/transformer-small/version_1

"$MT" fit "${CONFIGS[@]}" > fit1.log 2>&1 || fail "first mt fit exited $? (fit1.log)"
[ -f "$FIRST/checkpoints/best.ckpt" ] || fail "no $FIRST/checkpoints/best.ckpt"
grep -q "run folder: $FIRST" fit1.log || fail "fit1.log does not name the run folder $FIRST"
grep -q "\[mt\] best val/bleu = .*: .*$FIRST/checkpoints/best.ckpt" fit1.log \
  || fail "fit1.log does not end with the best score and its checkpoint"
before=$(cksum "$FIRST/checkpoints/best.ckpt" "$FIRST/checkpoints/last.ckpt" "$FIRST/config.yaml")
metrics_before=$(cat "$FIRST"/fit/version_0/metrics.csv)

"$MT" fit "${CONFIGS[@]}" > fit2.log 2>&1 || fail "second mt fit exited $? (fit2.log)"
[ -f "$SECOND/checkpoints/best.ckpt" ] || fail "no $SECOND/checkpoints/best.ckpt"
[ "$(cksum "$FIRST/checkpoints/best.ckpt" "$FIRST/checkpoints/last.ckpt" "$FIRST/config.yaml")" = "$before" ] \
  || fail "the second fit changed the first run's files"
cmp -s "$FIRST/checkpoints/best.ckpt" "$SECOND/checkpoints/best.ckpt" \
  && fail "the two runs' best checkpoints are the same file content"

"$MT" test "${CONFIGS[@]}" --ckpt_path "$FIRST/checkpoints/best.ckpt" > test.log 2>&1 \
  || fail "mt test exited $? (test.log)"
grep -q "test/bleu" test.log || fail "test.log has no test/bleu"
[ -f "$FIRST/test/version_0/metrics.csv" ] || fail "mt test wrote no $FIRST/test/version_0/metrics.csv"
[ "$(cat "$FIRST"/fit/version_0/metrics.csv)" = "$metrics_before" ] || fail "mt test changed the fit's metrics.csv"

# Starting a third run in the first run's folder is refused, and changes nothing.
if "$MT" fit "${CONFIGS[@]}" --run_dir "$FIRST" > refuse.log 2>&1; then fail "fit into $FIRST was not refused"; else rc=$?; fi
[ "$rc" -eq 2 ] || fail "refusal exited $rc, not 2 (refuse.log)"
tail -n 1 refuse.log | grep -q "mt: error: --run_dir $FIRST holds the checkpoints of another run" \
  || fail "refusal does not name the folder (refuse.log)"
[ "$(cksum "$FIRST/checkpoints/best.ckpt" "$FIRST/checkpoints/last.ckpt" "$FIRST/config.yaml")" = "$before" ] \
  || fail "the refused fit changed the first run's files"
echo "fit_twice: ok"
