#!/usr/bin/env bash
# Start loop/train.py on this node with `accelerate launch`: one process per GPU, bf16 where
# every GPU supports it (compute capability 8.0+), else fp16; no GPU: one CPU process.
#
#   ./launch.sh [--dry-run] [-- train args]
#   ./launch.sh -- --config configs/imdb.yaml --output_dir output/imdb
#   ./launch.sh --dry-run -- --config configs/smoke.yaml      # print the command, run nothing
#
# Several nodes: run it once on every node with the same NNODES, MASTER_ADDR and MASTER_PORT and
# each node's NODE_RANK (0 on the node at MASTER_ADDR). Under SLURM these come from SLURM_NNODES,
# SLURM_NODEID and the first host of SLURM_JOB_NODELIST:  srun --ntasks-per-node=1 ./launch.sh -- ...
#
# Environment (all optional):
#   ACCELERATE_CONFIG  an accelerate config file, e.g. configs/accelerate/fsdp.yaml (its distributed
#                      type is used; the process count and node flags from here still apply)
#   NPROC_PER_NODE     processes on this node (default: the GPUs in CUDA_VISIBLE_DEVICES or nvidia-smi;
#                      without a GPU only 1: several CPU processes need torchrun, see the README)
#   MIXED_PRECISION    no, fp16, bf16, fp8 (default: detected as above)
#   NNODES NODE_RANK MASTER_ADDR MASTER_PORT   multi-node rendezvous (MASTER_PORT default: 29500,
#                      under SLURM 20000 + job id mod 20000 so that jobs sharing a node do not clash)
#
# Stopping: SIGTERM, SIGINT (Ctrl-C), SIGUSR1 or SIGHUP (a dropped ssh session) to this script is
# passed on as SIGTERM to every training process; they finish the current optimizer step, save a
# checkpoint (each leaves a `preempted` mark in LOOP_PID_DIR) and exit, and this script exits 75
# (EX_TEMPFAIL: resume with --resume_from_checkpoint latest), as it does when a stop signal sent to
# the training processes alone made them save and exit. A second signal, two seconds or more later,
# makes them exit at once. The signals are handled from this script's first second on.
# A signal that saved nothing (it came while this script probed the GPUs or train.py was still
# starting, before its stop handlers were in; or the processes exited without saving) also exits 75,
# with a line saying that no checkpoint was saved: the job was stopped, not broken, so a job script
# that requeues on 75 should run it again, and with --resume_from_checkpoint auto that run continues
# from an earlier checkpoint of the output_dir if there is one, else starts afresh (`latest` would
# refuse an output_dir without one). A user error (train.py's one `error:` line: a flag, a file, the data)
# exits 2, as train.py does (accelerate's launcher would make it 1, under its traceback), and its line is
# repeated last. Other exit codes are the launcher's (a crash on one rank, which the others stop for, is 1).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
EXIT_PREEMPTED=75

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

dry_run=0
train_args=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; train_args=("$@"); break ;;
    *) train_args=("$@"); break ;;  # no `--`: everything from here on is for train.py
  esac
done

# ---------------------------------------------------------------- stop signals, from the first second
# The traps go in before the GPU probes below (importing torch can take tens of seconds on a shared
# filesystem): a signal then is recorded, nothing is started, and this script exits as described above.
# Each training process writes its pid into LOOP_PID_DIR when its stop handlers are in (torch elastic
# starts every rank in a session of its own, so the launcher's process group does not find them), and
# a `preempted` mark there when it saved a checkpoint for a stop signal (`user_error`, holding the error line,
# when it stopped on a user error; not when it stopped because another rank crashed).
pid=""          # the launcher, once started
signalled=""    # the first stop signal we got
interrupted=0
pid_dir=""
note() { echo "launch.sh: $*" >&2 2>/dev/null || true; }  # a dropped terminal (SIGHUP) must not end us
stop_training() {  # SIGTERM to the training processes (not the launcher, see below)
  local workers
  workers="$(ls "$pid_dir" 2>/dev/null | grep -E '^[0-9]+$' || true)"
  if [[ -n "$workers" && -r /proc/self/environ ]]; then
    # a listed rank that has ended leaves its file, and its pid may since be another process's: signal
    # only those that still hold this launch's LOOP_PID_DIR in their environment
    local w live=""
    for w in $workers; do
      grep -qzx "LOOP_PID_DIR=$pid_dir" "/proc/$w/environ" 2>/dev/null && live="$live $w"
    done
    [[ -n "$live" ]] || return 0  # every listed rank has ended: nothing left to stop
    workers="$live"
  fi
  if [[ -z "$workers" ]]; then  # not started yet: the launcher's group (DataLoader workers ignore it)
    workers="$(pgrep -g "$pid" 2>/dev/null | grep -vx "$pid" || true)"
  fi
  if [[ -n "$workers" ]]; then
    kill -TERM $workers 2>/dev/null || true
  else  # no pgrep, or the launcher has no children yet
    kill -TERM -- "-$pid" 2>/dev/null || true
  fi
}
forward() {
  [[ -n "$signalled" ]] || signalled="$1"
  interrupted=1
  if [[ -z "$pid" ]]; then  # still probing this node: the training will not be started
    note "SIG$1 before the training started: not starting it"
    return 0
  fi
  note "SIG$1: asking the training processes to save a checkpoint and stop"
  stop_training
}
if ((!dry_run)); then
  pid_dir="$(mktemp -d "${TMPDIR:-/tmp}/loop-pids.XXXXXX")"
  export LOOP_PID_DIR="$pid_dir"
  trap 'rm -rf "$pid_dir"' EXIT
  trap 'forward TERM' TERM
  trap 'forward INT' INT
  trap 'forward USR1' USR1
  trap 'forward HUP' HUP
fi
stopped_before_start() {
  note "stopped by SIG$signalled before the training processes had started: no checkpoint was saved." \
       "Run the same command again (exit 75, so a job script requeues); with --resume_from_checkpoint auto" \
       "it continues from an earlier checkpoint of the output_dir if there is one, else starts afresh."
  exit "$EXIT_PREEMPTED"
}

# ---------------------------------------------------------------- this node's devices
count_gpus() {
  if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then  # SLURM sets it to the GPUs of the allocation
    case "$CUDA_VISIBLE_DEVICES" in
      ""|-1|NoDevFiles) echo 0 ;;
      *) awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES" ;;
    esac
    return
  fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
  else  # ROCm, or a container without nvidia-smi: ask torch
    "${PYTHON:-python}" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
  fi
}

detect_precision() {  # bf16 needs compute capability 8.0 (Ampere) or newer on every GPU
  local caps min
  if ! command -v nvidia-smi >/dev/null 2>&1; then  # e.g. ROCm: ask torch
    if "${PYTHON:-python}" -c 'import sys, torch; sys.exit(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()))' 2>/dev/null
    then echo bf16; else echo fp16; fi
    return
  fi
  caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true)"
  min="$(awk 'NF { v = $1 + 0; if (m == "" || v < m) m = v } END { print m }' <<<"$caps")"
  if [[ -n "$min" ]] && awk -v v="$min" 'BEGIN { exit !(v >= 8.0) }'; then echo bf16; else echo fp16; fi
}

# ---------------------------------------------------------------- the nodes
first_host() {  # first host of a SLURM node list: "gpu[003-005,010],cpu1" -> gpu003
  local list="$1"
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$list" 2>/dev/null | head -n 1 && return
  fi
  local head="${list%%,*}"
  if [[ "$list" == *\[* && "${list%%\[*}" != *,* ]]; then  # the first entry has a bracket range
    local prefix="${list%%\[*}" inside="${list#*\[}"
    local rest="${inside#*\]}"
    inside="${inside%%\]*}"
    inside="${inside%%,*}"
    inside="${inside%%-*}"
    rest="${rest%%,*}"
    rest="${rest%%\[*}"
    head="$prefix$inside$rest"
  fi
  echo "$head"
}

if [[ -z "${NNODES:-}" && -n "${SLURM_JOB_ID:-}${SLURM_NNODES:-}" ]]; then
  NNODES="${SLURM_NNODES:-${SLURM_JOB_NUM_NODES:-1}}"
  NODE_RANK="${NODE_RANK:-${SLURM_NODEID:-0}}"
  nodelist="${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}"
  if [[ -z "${MASTER_ADDR:-}" && -n "$nodelist" ]]; then MASTER_ADDR="$(first_host "$nodelist")"; fi
  if [[ -z "${MASTER_PORT:-}" && -n "${SLURM_JOB_ID:-}" ]]; then MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000)); fi
fi
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_PORT="${MASTER_PORT:-29500}"
if ! [[ "$NNODES" =~ ^[0-9]+$ ]] || ((10#$NNODES == 0)); then
  echo "launch.sh: NNODES='$NNODES' is not a number of nodes." >&2
  exit 2
fi
NNODES=$((10#$NNODES))  # 010 is 10, not octal 8 (bash reads a leading 0 so), here and below
if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || ((10#$NODE_RANK >= NNODES)); then
  echo "launch.sh: NODE_RANK='$NODE_RANK' must be one of 0..$((NNODES - 1)) for NNODES=$NNODES." >&2
  exit 2
fi
NODE_RANK=$((10#$NODE_RANK))
if ((NNODES > 1)) && [[ -z "${MASTER_ADDR:-}" ]]; then
  echo "launch.sh: NNODES=$NNODES needs MASTER_ADDR (the host of node rank 0)." >&2
  exit 2
fi

# ---------------------------------------------------------------- the command
case "${MIXED_PRECISION:-no}" in
  no|fp16|bf16|fp8) ;;
  *) echo "launch.sh: MIXED_PRECISION='$MIXED_PRECISION' is not one of no, fp16, bf16, fp8." >&2; exit 2 ;;
esac
gpus="$(count_gpus)" || true  # a stop signal to our process group may end the probe
[[ -n "$signalled" ]] && stopped_before_start
gpus="${gpus:-0}"
per_node="${NPROC_PER_NODE:-$gpus}"  # processes on this node: one per GPU unless told otherwise
if ! [[ "$per_node" =~ ^[0-9]+$ ]]; then
  echo "launch.sh: NPROC_PER_NODE='$per_node' is not a number of processes." >&2
  exit 2
fi
per_node=$((10#$per_node))  # 08 is 8 (bash reads a leading 0 as octal)
if ((gpus > 0 && per_node == 0)); then  # 0 read as "no GPU" would train on the CPU beside idle GPUs
  echo "launch.sh: NPROC_PER_NODE=0 starts no process; leave it unset for one per GPU ($gpus here)." >&2
  exit 2
fi
if [[ -n "${ACCELERATE_CONFIG:-}" && ( ! -e "$ACCELERATE_CONFIG" || -d "$ACCELERATE_CONFIG" ) ]]; then  # <(...) is fine
  echo "launch.sh: ACCELERATE_CONFIG='$ACCELERATE_CONFIG' is not a file; check the path (configs/accelerate/ has some)." >&2
  exit 2
fi
if ((gpus > 0 && per_node > gpus)); then
  echo "launch.sh: NPROC_PER_NODE=$per_node but this node has $gpus GPU(s); use at most $gpus." >&2
  exit 2
fi
if ((gpus == 0 && per_node > 1)) && [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
  echo "launch.sh: NPROC_PER_NODE=$per_node but this node has no GPU; for several CPU processes run" \
       "ACCELERATE_USE_CPU=true torchrun --nproc_per_node $per_node loop/train.py ... instead." >&2
  exit 2
fi
cmd=(accelerate launch)
[[ -n "${ACCELERATE_CONFIG:-}" ]] && cmd+=(--config_file "$ACCELERATE_CONFIG")
if ((gpus > 0 && per_node > 0)); then
  nproc=$((NNODES * per_node))
  precision="${MIXED_PRECISION:-$(detect_precision || true)}"
  cmd+=(--num_processes "$nproc" --mixed_precision "$precision")
  if ((nproc > 1)) && [[ -z "${ACCELERATE_CONFIG:-}" ]]; then cmd+=(--multi_gpu); fi
elif [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
  precision="${MIXED_PRECISION:-no}"
  # threads: what accelerate picks itself (OMP_NUM_THREADS, else one per physical core), said so it does not
  # print its block of "values not passed" warnings
  cores="$(lscpu -p=CORE,SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)" || cores=0
  ((cores > 0)) || cores="$(nproc 2>/dev/null || echo 1)"
  cmd+=(--cpu --num_processes 1 --num_cpu_threads_per_process "${OMP_NUM_THREADS:-$cores}" --mixed_precision "$precision")
elif [[ -n "${MIXED_PRECISION:-}" ]]; then  # e.g. TPU: processes and precision come from the file
  cmd+=(--mixed_precision "$MIXED_PRECISION")
fi
if ((NNODES > 1)); then
  cmd+=(--num_machines "$NNODES" --machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR"
        --main_process_port "$MASTER_PORT")
else
  [[ -z "${ACCELERATE_CONFIG:-}" ]] && cmd+=(--num_machines 1)
  if ((${nproc:-1} > 1)); then  # one node, several processes: the job's own port (two jobs may share a node)
    cmd+=(--main_process_port "$MASTER_PORT")
  fi
fi
cmd+=(--dynamo_backend no "$here/loop/train.py" ${train_args[@]+"${train_args[@]}"})

if ((dry_run)); then
  printf '%q ' "${cmd[@]}" | sed 's/ $//'
  echo
  exit 0
fi

# ---------------------------------------------------------------- run, passing on stop signals
[[ -n "$signalled" ]] && stopped_before_start
echo "launch.sh: node $NODE_RANK of $NNODES, $gpus GPU(s) here, mixed precision ${precision:-from config}" >&2
# The launcher gets a process group of its own, so that Ctrl-C reaches the training processes only
# through us. We signal the training processes, not the launcher: torchrun would pass the signal on
# and SIGKILL them 30 s later, cutting a long checkpoint save short (the previous one stays intact).
setsid "${cmd[@]}" &
pid=$!
[[ -n "$signalled" ]] && stop_training  # a signal while it was being started
while :; do
  interrupted=0
  rc=0
  wait "$pid" || rc=$?
  ((interrupted)) || break  # a trapped signal makes `wait` return early: wait again
done
# If the launcher itself was signalled (e.g. by SLURM), it may exit before its training processes
# have finished saving: wait for the whole group.
while kill -0 -- "-$pid" 2>/dev/null; do sleep 1; done
if [[ $rc -ne 0 && -e "$pid_dir/preempted" ]]; then  # a training process saved a checkpoint and stopped
  if [[ -n "$signalled" ]]; then
    note "stopped by SIG$signalled; the training processes saved a checkpoint: resume with" \
         "--resume_from_checkpoint latest"
  else  # a signal sent to the training processes, not to us
    note "a training process was stopped by a signal and saved a checkpoint; resume with" \
         "--resume_from_checkpoint latest"
  fi
  exit "$EXIT_PREEMPTED"
fi
if [[ $rc -ne 0 && -z "$signalled" && -e "$pid_dir/user_error" ]]; then  # train.py's `error:` line
  # a user error (a flag, a file, the data): accelerate's launcher reports it as its own failure (1), under
  # a traceback of its own. The mark holds the line: said last, and the only copy when a rank that prints
  # nothing hit it alone.
  note "train.py stopped on this error (the launcher's traceback above follows from it); fix it and run" \
       "again (exit 2):"
  echo "error: $(head -c 4000 "$pid_dir/user_error")" >&2 2>/dev/null || true
  exit 2
fi
if [[ -n "$signalled" && $rc -ne 0 ]]; then  # stopped, but nothing saved for it: see the header
  if ! ls "$pid_dir" 2>/dev/null | grep -qE '^[0-9]+$'; then  # no training process had its handlers in
    stopped_before_start
  fi
  note "stopped by SIG$signalled, but the training processes exited (launcher exit code $rc) without saving" \
       "a checkpoint for it (a second signal, or a failure while saving: see above). Run the same command" \
       "again (exit 75, so a job script requeues); with --resume_from_checkpoint auto it continues from" \
       "the newest complete checkpoint of the output_dir if there is one, else starts afresh."
  exit "$EXIT_PREEMPTED"
fi
exit "$rc"
