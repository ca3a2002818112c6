#!/usr/bin/env bash
# The GPU runs of the benchmarks, on the lent device machine (see ../shared/device/README.md).
#
# Here, from the project root, once:   ../shared/device/pack.sh data model      (.carry/, ~62 MB)
# Then one device call per part, carry [".carry"]:
#   bash bench/gpu.sh throughput   DistilBertConfig() random weights, IMDb train, ours vs Trainer, bf16 (~3 min)
#   bash bench/gpu.sh accuracy     all-MiniLM-L6-v2, full IMDb split, 2 epochs, bf16, ours vs Trainer (~7 min)
#   bash bench/gpu.sh fsdp         FSDP, 1 GPU (configs/accelerate/fsdp.yaml): uninterrupted vs stopped+resumed (~2 min)
#   bash bench/gpu.sh compile      --torch_compile false vs true, DistilBertConfig(), IMDb (~2.5 min)
#   bash bench/gpu.sh decoder      Qwen2-0.5B-shaped decoder, bf16, full fine-tuning vs LoRA r16 (~1.5 min)
#   bash bench/gpu.sh all          throughput + fsdp + compile + decoder, each capped, <= 9 min in all
# Each part's JSON line is printed and written to $OUT/<part>.json, its progress log to $OUT/<part>.log.
# A part that fails (or hits its cap) leaves its log, and the parts after it still run; the exit code
# is the number of parts that failed.
#
# `all`, estimated for one H100 (no GPU numbers were measured when this was written):
#   setup.sh: wheels into /tmp/site + unpack MiniLM's 41 MB of xz: ~0.5 min.
#   throughput ~2.5 min: 2 x 330 steps of batch 16 (ours ~300 padded tokens/review, Trainer ~550) on
#     DistilBERT: 6 x 66M x 4.5M tokens = 1.8 PFLOP, ~20 s at the 100 TFLOP/s a 66M model reaches (the
#     device notes' Trainer reference, ~200 samples/s, gives 26 s for its 5,280 reviews); the rest is
#     fixed cost: 3 processes' imports + CUDA init (~15 s each) and tokenizing 25k+5k reviews twice (~40 s).
#   fsdp ~1.7 min: 3 launches (~15 s start each) of 128, 80 and 48 steps on MiniLM (22M; ~30 ms/step
#     with FSDP's per-step all-gather: ~4 s each), 4 sharded checkpoints + best/ per full run (~1 s each).
#   compile ~2.5 min: eager ~0.5 min; compiled: Inductor compiles forward+backward once for the first
#     padded shape and once more with a dynamic length (~40-60 s each on a cold cache), then 240 steps.
#   decoder ~1.5 min: 0.36B non-embedding parameters, 16 x ~300 tokens: 6 x 0.36e9 x 4,800 = 10 TFLOP a
#     step, ~40-60 ms at 200-300 TFLOP/s, so 50 steps ~3 s per variant; the rest is 2 x (start 15 s,
#     random init of 0.39B parameters on the CPU ~10 s, tokenizing 2,000 reviews).
#   Total ~8.5 min of estimates; the caps below (170+120+160+90 = 540 s) bound it at 9 min + setup, so
#   the call fits the 10-minute limit even when a part runs long.
set -uo pipefail
source .carry/setup.sh || exit 1
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
part=${1:?usage: bench/gpu.sh throughput|accuracy|fsdp|compile|decoder|all}
# CPU checks of this script only: BENCH_SMOKE=1 gives bench/proof.py parts --smoke, BENCH_CAP=N caps every part at N s
smoke=${BENCH_SMOKE:+--smoke}
data=(--train_file "$IMDB_DIR/train.parquet" --test_file "$IMDB_DIR/test.parquet")

set_cmd() {  # the part's command line, in the array cmd
  case "$1" in
    throughput) cmd=(python3 bench/throughput.py "${data[@]}" --tokenizer "$MINILM_DIR" --model_size distilbert
                     --max_train_samples 25000 --max_eval_samples 5000 --warmup_steps 30 --steps 300) ;;
    accuracy)   cmd=(python3 bench/accuracy.py --model "$MINILM_DIR" "${data[@]}" --epochs 2 --lr 2e-5
                     --batch_size 16 --bf16) ;;
    # fsdp fine-tunes the pretrained MiniLM (BERT family: the case accelerate's FSDP2 wrap used to break)
    fsdp)       cmd=(python3 bench/proof.py fsdp "${data[@]}" --model "$MINILM_DIR" --tokenizer "$MINILM_DIR" $smoke) ;;
    compile|decoder) cmd=(python3 bench/proof.py "$1" "${data[@]}" --tokenizer "$MINILM_DIR" $smoke) ;;
  esac
}

failed=0
run_part() {  # run_part NAME CAP_SECONDS
  local name=$1 cap=${BENCH_CAP:-$2}
  set_cmd "$name"
  echo "+ ${cmd[*]}   (cap ${cap}s)"
  local start=$SECONDS
  # timeout: SIGTERM at the cap, SIGKILL 15 s later; -k keeps a hung FSDP process group from holding on
  if timeout -k 15 "$cap" "${cmd[@]}" > "$OUT/$name.json" 2> "$OUT/$name.log"; then
    grep '^\[bench\]' "$OUT/$name.log" | cut -c1-400 || true
    cat "$OUT/$name.json"
    echo "= $name done in $((SECONDS - start)) s"
  else
    local rc=$?
    echo "= $name FAILED (exit $rc$([ $rc = 124 ] && echo ", cap of ${cap}s reached")) after $((SECONDS - start)) s; log tail:"
    tail -c 4000 "$OUT/$name.log"
    [ -s "$OUT/$name.json" ] || rm -f "$OUT/$name.json"
    failed=$((failed + 1))
  fi
}

case "$part" in
  throughput|accuracy|fsdp|compile|decoder) run_part "$part" 570 ;;
  all)
    run_part throughput 170
    run_part fsdp 120
    run_part compile 160
    run_part decoder 90 ;;
  *) echo "bench/gpu.sh: unknown part '$part' (throughput, accuracy, fsdp, compile, decoder or all)" >&2; exit 2 ;;
esac
exit $failed
