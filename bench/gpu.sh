#!/usr/bin/env bash
# The GPU runs of the benchmarks, on the lent device machine (see ../shared/device/README.md).
#
# Here, from the project root, once:   ../shared/device/pack.sh data model      (.carry/, ~62 MB)
# Then, carry [".carry"]:
#   bash bench/gpu.sh all          every part below, in that order, within this call's budget (BENCH_BUDGET_S,
#                                  default 560 s: a 600 s call); a part that no longer fits is skipped
#   bash bench/gpu.sh rest         the parts not done yet on this (still warm) machine: the next call
#   bash bench/gpu.sh PART         one part alone
# Parts (issue #14's order of importance; estimates for one H100/H200, nothing was measured on a GPU yet):
#   throughput  DistilBertConfig() random weights, 8k IMDb reviews, ours vs Trainer, bf16      ~1.3 min
#   accuracy    all-MiniLM-L6-v2, full IMDb 25k/25k, 2 epochs, bf16, ours vs Trainer            ~4.5 min
#   fsdp        FSDP, 1 GPU (configs/accelerate/fsdp.yaml): uninterrupted vs stopped+resumed     ~1.7 min
#   decoder     Qwen2-0.5B-shaped decoder, bf16, full vs LoRA r16 vs LoRA with a bf16 body      ~1.7 min
#   compile     --torch_compile false vs true, DistilBertConfig(), 3.2k IMDb reviews             ~1.7 min
# Each part's JSON line is printed and written to $OUT/<part>.json, its progress log appended to $OUT/logs.txt;
# a finished part's JSON is also kept in /tmp/bench_done (it outlives the call while the machine stays
# warm), which is how `rest` knows what is left. A part that fails (or hits its cap) leaves its log, and
# the parts after it still run. Exit code: the number of parts that failed or were skipped.
#
# Device time is 15 minutes a session, a machine start included (1-2 min), so: call 1 `all` (timeout_s
# 600), then at once, while the machine is warm (30 s), call 2 `rest` with BENCH_BUDGET_S = what status
# says is left minus 60 s. How the estimates were made:
#   setup.sh: wheels into /tmp/site + unpack MiniLM's 41 MB of xz: ~20-30 s.
#   throughput: 2 x 220 steps of batch 16 on DistilBERT (ours ~300 padded tokens/review, Trainer ~550):
#     6 x 66M x 16 x 300-550 = 2-3.5 TFLOP a step, ~10-25 ms at the ~150 TFLOP/s a 66M model reaches
#     (the device notes' Trainer reference, ~200 samples/s, is 80 ms a step: 18 s for 220 steps); the rest
#     is fixed cost: 3 processes' imports + CUDA init (~10-15 s each) and tokenizing 10k reviews twice.
#   accuracy: 2 x 1,563 steps each. Ours: ~10 ms a step (overhead-bound, length-grouped) = 30 s, two
#     evaluations of 25k at batch 64 sorted (~5 s), tokenizing 50k reviews in 8 processes (~15 s), loading
#     (~15 s): ~1.3 min. Trainer: ~30-40 ms a step (guide recipe, random batches) = 100-125 s, two
#     evaluations at batch 16 (~15 s each), two checkpoints, tokenizing 50k in one process (~30 s): ~3.3 min.
#   fsdp: 3 launches (~15 s start each) of 128, 80 and 48 steps on MiniLM (22M; ~30 ms/step with FSDP's
#     per-step all-gather: ~4 s each), 4 sharded checkpoints + best/ per full run (~1 s each).
#   compile: eager ~0.4 min; compiled: Inductor compiles forward+backward for the first padded shape and
#     again with a dynamic length (~30-50 s each on a cold cache), then 180 steps.
#   decoder: 0.36B non-embedding parameters, 16 x ~300 tokens: 6 x 0.36e9 x 4,800 = 10 TFLOP a step,
#     ~40-60 ms at 200-300 TFLOP/s, so 50 steps ~3 s per variant; the rest is 3 x (start 15 s, random
#     init of 0.39B parameters on the CPU ~10 s, tokenizing 2,000 reviews).
set -uo pipefail
# BENCH_SETUP: a stand-in for the CPU check here (.carry/setup.sh installs py3.12 wheels: the device image's)
source "${BENCH_SETUP:-.carry/setup.sh}" || exit 1
OUT=${OUT:-/tmp/bench_out}
DONE=${BENCH_DONE_DIR:-/tmp/bench_done}
mkdir -p "$OUT" "$DONE"
part=${1:?usage: bench/gpu.sh all|rest|throughput|accuracy|fsdp|compile|decoder}
# This call's seconds, setup included ($SECONDS counts from the script's start); the default leaves a 600 s
# call 40 s for the transfers and a part's SIGKILL grace.
budget=${BENCH_BUDGET_S:-560}
# CPU checks of this script only: BENCH_SMOKE=1 gives every part CPU sizes (bench/proof.py --smoke; tiny
# subsets for throughput and accuracy), BENCH_CAP=N caps every part at N s
smoke=${BENCH_SMOKE:+--smoke}
small_throughput=() small_accuracy=() bf16=(--bf16)
if [ -n "${BENCH_SMOKE:-}" ]; then
  small_throughput=(--model_size tiny --max_train_samples 400 --max_eval_samples 100 --warmup_steps 3 --steps 10)
  small_accuracy=(--max_train_samples 200 --max_eval_samples 100 --max_length 64 --epochs 1) bf16=()
fi
data=(--train_file "$IMDB_DIR/train.parquet" --test_file "$IMDB_DIR/test.parquet")

# name  cap (s)  least worth starting (s): a part given less than its least would be cut off and waste the time,
# so each least is at least the part's estimate above (an audit found 80 s leasts under ~100 s estimates).
# accuracy gets room beyond its estimate: Trainer's step time is the least certain number here (the device
# notes' DistilBERT Trainer ran 60-100 ms a step, which would make its 3,125 steps 3-5 minutes), and a cut run
# loses Trainer's result; the parts after it then move to call 2. The decoder comes before compile: it needs
# less, so what call 1 has left after fsdp is more likely to hold it, and call 2 then holds compile.
PARTS="throughput 120 70
accuracy 400 220
fsdp 130 110
decoder 130 110
compile 170 140"

set_cmd() {  # the part's command line, in the array cmd
  case "$1" in
    throughput) cmd=(python3 bench/throughput.py "${data[@]}" --tokenizer "$MINILM_DIR" --model_size distilbert
                     --max_train_samples 8000 --max_eval_samples 2000 --warmup_steps 20 --steps 200
                     "${small_throughput[@]}") ;;
    accuracy)   cmd=(python3 bench/accuracy.py --model "$MINILM_DIR" "${data[@]}" --epochs 2 --lr 2e-5
                     --batch_size 16 "${bf16[@]}" "${small_accuracy[@]}") ;;
    # fsdp fine-tunes the pretrained MiniLM (BERT family: the case accelerate's FSDP2 wrap used to break)
    fsdp)       cmd=(python3 bench/proof.py fsdp "${data[@]}" --model "$MINILM_DIR" --tokenizer "$MINILM_DIR" $smoke) ;;
    compile|decoder) cmd=(python3 bench/proof.py "$1" "${data[@]}" --tokenizer "$MINILM_DIR" $smoke) ;;
  esac
}

kill_part() {  # kill_part TOKEN: SIGKILL to every process started with BENCH_PART_TOKEN=TOKEN, then 2 s
  local pids killed="" i  # for the GPU memory they held to be freed; nothing left, no wait
  for i in 1 2 3 4 5; do  # again: one may have forked between the look and the kill
    pids=$(grep -lzx "BENCH_PART_TOKEN=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
    [ -z "$pids" ] && break
    kill -KILL $pids 2>/dev/null || true
    killed=1
  done
  [ -z "$killed" ] || sleep 2
}

not_done=0
run_part() {  # run_part NAME CAP_SECONDS LEAST_SECONDS
  local name=$1 cap=${BENCH_CAP:-$2} least=${BENCH_CAP:-$3}
  local left=$((budget - SECONDS - 20))  # 20 s: timeout's SIGKILL grace (15 s) and the JSON copies
  [ "$cap" -gt "$left" ] && cap=$left
  if [ "$cap" -lt "$least" ]; then
    echo "= $name SKIPPED: ${left} s left of this call's ${budget} s, it needs ~${least} s; next call: bash bench/gpu.sh rest"
    not_done=$((not_done + 1))
    return
  fi
  set_cmd "$name"
  echo "+ ${cmd[*]}   (cap ${cap}s, at ${SECONDS}s of ${budget}s)"
  local start=$SECONDS
  # timeout: SIGTERM at the cap, SIGKILL 15 s later; -k keeps a hung FSDP process group from holding on.
  # BENCH_PART_TOKEN: every process of this part inherits it, whatever session it starts (see below)
  local rc=0 token="$$-$name-$RANDOM$RANDOM"
  BENCH_PART_TOKEN=$token timeout -k 15 "$cap" "${cmd[@]}" < /dev/null > "$OUT/$name.json" 2> "$OUT/$name.log" || rc=$?
  if [ $rc = 0 ]; then
    grep '^\[bench\]' "$OUT/$name.log" | cut -c1-400 || true
    cat "$OUT/$name.json"
    cp "$OUT/$name.json" "$DONE/$name.json"
    echo "= $name done in $((SECONDS - start)) s"
  else
    echo "= $name FAILED (exit $rc$([ $rc = 124 ] && echo ", cap of ${cap}s reached")) after $((SECONDS - start)) s; log tail:"
    tail -c 4000 "$OUT/$name.log"
    [ -s "$OUT/$name.json" ] || rm -f "$OUT/$name.json"
    # the launchers start each rank in a session of its own, out of timeout's reach: a rank left
    # behind (saving its stop checkpoint, say) would hold the GPU during the next part's measurement.
    # Found by the token in its environment, not by name: another training on this machine (a test
    # run beside this one, a user's job) is left alone.
    kill_part "$token"
    not_done=$((not_done + 1))
  fi
  # At most 8 files come back from $OUT: the parts' logs go into one file (the running part's log stays
  # $OUT/<part>.log until it ends, so a call cut off mid-part still brings it back).
  { echo "===== $name: exit $rc after $((SECONDS - start)) s"; cat "$OUT/$name.log"; } >> "$OUT/logs.txt"
  rm -f "$OUT/$name.log"
}

case "$part" in
  all|rest)
    while read -r name cap least; do
      if [ "$part" = rest ] && [ -s "$DONE/$name.json" ]; then
        cp "$DONE/$name.json" "$OUT/$name.json"  # $OUT is emptied before each call: bring it back again
        echo "= $name done in an earlier call"
      else
        run_part "$name" "$cap" "$least"
      fi
    done <<< "$PARTS" ;;
  throughput|accuracy|fsdp|compile|decoder) run_part "$part" 570 1 ;;
  *) echo "bench/gpu.sh: unknown part '$part' (all, rest, throughput, accuracy, fsdp, compile or decoder)" >&2; exit 2 ;;
esac
exit $not_done
