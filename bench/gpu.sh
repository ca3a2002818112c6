#!/usr/bin/env bash
# The GPU runs of the benchmarks, on the lent device machine (see ../shared/device/README.md).
#
# Here, from the project root, once:   ../shared/device/pack.sh data model      (.carry/, ~62 MB)
# Then one device call per part, carry [".carry"]:
#   bash bench/gpu.sh throughput   DistilBertConfig() random weights, IMDb train, ours vs Trainer, bf16 (~3 min)
#   bash bench/gpu.sh accuracy     all-MiniLM-L6-v2, full IMDb split, 2 epochs, bf16, ours vs Trainer (~7 min)
# The JSON line is printed and written to $OUT/<part>.json, the progress log to $OUT/<part>.log.
set -euo pipefail
source .carry/setup.sh
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
part=${1:?usage: bench/gpu.sh throughput|accuracy}
case "$part" in
  throughput)
    cmd=(python3 bench/throughput.py --train_file "$IMDB_DIR/train.parquet" --test_file "$IMDB_DIR/test.parquet"
         --tokenizer "$MINILM_DIR" --model_size distilbert --max_train_samples 25000 --max_eval_samples 5000
         --warmup_steps 30 --steps 300) ;;
  accuracy)
    cmd=(python3 bench/accuracy.py --model "$MINILM_DIR" --train_file "$IMDB_DIR/train.parquet"
         --test_file "$IMDB_DIR/test.parquet" --epochs 2 --lr 2e-5 --batch_size 16 --bf16) ;;
  *) echo "bench/gpu.sh: unknown part '$part' (throughput or accuracy)" >&2; exit 2 ;;
esac
echo "+ ${cmd[*]}"
if ! "${cmd[@]}" > "$OUT/$part.json" 2> "$OUT/$part.log"; then
  tail -c 6000 "$OUT/$part.log"
  exit 1
fi
grep '^\[bench\]' "$OUT/$part.log" || true
cat "$OUT/$part.json"
