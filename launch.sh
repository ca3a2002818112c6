#!/usr/bin/env bash
# Start loop/train.py on this node with `accelerate launch`: one process per GPU, bf16 where
# every GPU supports it (compute capability 8.0+), else fp16; no GPU: one CPU process.
#
#   ./launch.sh [--dry-run] [-- train args]
#   ./launch.sh -- --config configs/imdb.yaml --output_dir output/imdb
#   ./launch.sh --dry-run -- --config configs/smoke.yaml      # print the command, run nothing
#
# One process (one GPU, or the CPU) starts as `$PYTHON loop/accelerate_launch.py <accelerate launch flags>`:
# accelerate works out train.py's environment from the same flags and config, and that process becomes
# train.py, with no launcher process in between (accelerate's one-process launcher would SIGKILL train.py
# 5 s after a SIGTERM, mid-save; see Stopping).
#
# Several nodes: run it once on every node with the same NNODES, MASTER_ADDR and MASTER_PORT and
# each node's NODE_RANK (0 on the node at MASTER_ADDR). Under SLURM these come from SLURM_NNODES,
# SLURM_NODEID and the first host of SLURM_JOB_NODELIST:  srun --ntasks-per-node=1 ./launch.sh -- ...
# (a step with more tasks on a node is refused: each would start a run of its own; so is a batch script of several
# nodes running launch.sh itself, outside srun, which would start the first node alone). GPU nodes only: launch.sh
# does not join CPU nodes (accelerate's CPU launcher would train alone on each); it says the torchrun command that does.
#
# Environment (all optional):
#   ACCELERATE_CONFIG  an accelerate config file, e.g. configs/accelerate/fsdp.yaml (its distributed
#                      type is used; on a GPU node the process count and node flags from here still apply;
#                      a GPU-only one, MULTI_GPU, FSDP or DEEPSPEED, is refused on a node without a GPU, and so
#                      is a MULTI_CPU one of several processes or machines, without an mpirun hostfile: torchrun)
#   NPROC_PER_NODE     processes on this node (default: the GPUs in CUDA_VISIBLE_DEVICES or nvidia-smi;
#                      without a GPU only 1: several CPU processes need torchrun, see the README)
#   MIXED_PRECISION    no, fp16, bf16, fp8 (default: detected as above)
#   NNODES NODE_RANK MASTER_ADDR MASTER_PORT   multi-node rendezvous (MASTER_PORT default: 29500,
#                      under SLURM 20000 + job id mod 20000 so that jobs sharing a node do not clash)
#   OMP_NUM_THREADS    a CPU process's threads (default: the physical cores it may run on, at most
#                      SLURM_CPUS_PER_TASK)
#   PYTHON             the interpreter of one process, and of the GPU probes without nvidia-smi; it needs
#                      accelerate (default: the one `accelerate` runs under, else the first of python3 and
#                      python that has accelerate)
#
# Stopping: SIGTERM, SIGINT (Ctrl-C), SIGUSR1 or SIGHUP (a dropped ssh session) to this script is
# passed on as SIGTERM to every training process; they finish the current optimizer step, save a
# checkpoint (each leaves a `preempted` mark in LOOP_PID_DIR) and exit, and this script exits 75
# (EX_TEMPFAIL: resume with --resume_from_checkpoint latest), as it does when a stop signal sent to
# the training processes alone made them save and exit. SLURM signals every process of the job step
# at once (time limit, preemption, scancel, --signal without B:): that works the same, and the save may
# take until SLURM's own SIGKILL (KillWait after a time limit): one process runs without a launcher,
# torch elastic's (several processes; torch 2.9+) is told to leave these signals to the training
# processes, and this script waits for every one of them to exit before it does.
# A second signal, two seconds or more later, makes them exit at once. The signals are handled from
# this script's first second on.
# A signal that saved nothing (it came while this script probed the GPUs or train.py was still
# starting, before its stop handlers were in; or the processes exited without saving) also exits 75,
# with a line saying that no checkpoint was saved: the job was stopped, not broken, so a job script
# that requeues on 75 should run it again, and with --resume_from_checkpoint auto that run continues
# from an earlier checkpoint of the output_dir if there is one, else starts afresh (`latest` would
# refuse an output_dir without one). A user error (train.py's one `error:` line: a flag, a file, the data)
# exits 2, as train.py does (accelerate's multi-process launcher would make it 1, under its traceback,
# and the line is then repeated last). Other exit codes are train.py's, or with several processes the
# launcher's (a crash on one rank, which the others stop for, is 1).
[ -n "${BASH_VERSION:-}" ] || { echo "launch.sh: run it with bash (./launch.sh or bash launch.sh), not sh." >&2; exit 2; }
set -euo pipefail
# the repository: the script's own folder, through a symbolic link to it (~/bin/launch.sh); `sbatch launch.sh` runs
# a copy in SLURM's spool folder, whose repository is the folder it was submitted from
here="$(cd "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")" && pwd)"  # (a readlink without -f: as given)
if [[ ! -f "$here/loop/train.py" && -f "${SLURM_SUBMIT_DIR:-}/loop/train.py" ]]; then
  here="$SLURM_SUBMIT_DIR"
fi
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
if [[ ! -f "$here/loop/train.py" ]]; then
  echo "launch.sh: no loop/train.py in $here (this copy of launch.sh is outside the loop repository); run the" \
       "repository's launch.sh, or submit it from the repository's folder (sbatch runs a copy of it)." >&2
  exit 2
fi

# One launch.sh per node: it starts every process of its node itself. An srun step with more tasks on a node
# (the common `#SBATCH --ntasks-per-node=8` template) would start that many runs of their own, on one port and
# output_dir. SLURM_STEP_TASKS_PER_NODE is srun's ("8(x2)", "2,1"; the batch script itself has none).
tasks_per_node=0
IFS=, read -ra step_tasks <<<"${SLURM_STEP_TASKS_PER_NODE:-}"
for n in ${step_tasks[@]+"${step_tasks[@]}"}; do
  n="${n%%(*}"
  if [[ "$n" =~ ^[0-9]+$ ]] && ((10#$n > tasks_per_node)); then tasks_per_node=$((10#$n)); fi
done
# An interactive `srun --ntasks-per-node=4 --pty bash` is such a step too, but its other tasks ended at once (their
# stdin is /dev/null) and launch.sh runs once, typed into task 0's shell: srun --pty sets SLURM_PTY_PORT, and then
# only a task other than its node's first is refused (`srun --pty ./launch.sh` with more tasks on a node).
if [[ -n "${SLURM_PTY_PORT:-}" ]]; then tasks_per_node=0; fi
if ((tasks_per_node > 1)) || [[ "${SLURM_LOCALID:-0}" =~ ^0*[1-9][0-9]*$ ]]; then  # (task 1 of its node)
  ((tasks_per_node > 1)) || tasks_per_node="several"
  echo "launch.sh: this SLURM step runs $tasks_per_node tasks on a node, and each would start a training run of" \
       "its own; launch.sh starts every process of its node itself: run one task per node (srun" \
       "--ntasks-per-node=1 ./launch.sh ...)." >&2
  exit 2
fi

# ---------------------------------------------------------------- stop signals, from the first second
# The traps go in before the GPU probes below (importing torch can take tens of seconds on a shared
# filesystem): a signal then is recorded, nothing is started, and this script exits as described above.
# Each training process writes its pid into LOOP_PID_DIR when its stop handlers are in (torch elastic
# starts every rank in a session of its own, so the launcher's process group does not find them), and
# a `preempted` mark there when it saved a checkpoint for a stop signal (`user_error`, holding the error line,
# when it stopped on a user error; not when it stopped because another rank crashed).
pid=""          # the launcher (several processes) or train.py itself (one), once started
signalled=""    # the first stop signal we got
interrupted=0
pid_dir=""
note() { echo "launch.sh: $*" >&2 2>/dev/null || true; }  # a dropped terminal (SIGHUP) must not end us
listed() { ls "$pid_dir" 2>/dev/null | grep -E '^[0-9]+$' || true; }  # the training processes that listed themselves
live_ranks() {  # those of them still running: a rank that has ended leaves its file, and its pid may since be
  local w       # another process's, so only those that still hold this launch's LOOP_PID_DIR in their environment
  for w in $(listed); do
    if grep -qzxF "LOOP_PID_DIR=$pid_dir" "/proc/$w/environ" 2>/dev/null; then echo "$w"; fi
  done
}
started_here() {  # every process started under this launch: the launcher, the training processes, their workers
  grep -lzxF "LOOP_PID_DIR=$pid_dir" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
}
stop_training() {  # SIGTERM to the training processes (not the launcher, see below)
  local workers
  workers="$(listed)"
  if [[ -n "$workers" && -r /proc/self/environ ]]; then
    workers="$(live_ranks)"
    [[ -n "$workers" ]] || return 0  # every listed rank has ended: nothing left to stop
  fi
  if [[ -z "$workers" ]]; then
    # none has its stop handlers in yet, so nothing is saved: end every process of this launch, the launcher
    # too (DataLoader workers ignore it). The launcher alone would not do: torch elastic, told to leave the stop
    # signals to its ranks, dies at once, and its ranks (in sessions of their own) would go on starting.
    workers="$(started_here)"
  fi
  if [[ -n "$workers" ]]; then
    kill -TERM $workers 2>/dev/null || true
  else  # no /proc: the launcher's process group
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
  # TMPDIR may be missing on this node (a per-job folder that a prolog made on another node, before a requeue)
  pid_dir="$(mktemp -d "${TMPDIR:-/tmp}/loop-pids.XXXXXX" 2>/dev/null || mktemp -d /tmp/loop-pids.XXXXXX)"
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
# The interpreter of the one process (loop/accelerate_launch.py, which imports accelerate, then becomes train.py)
# and of the GPU probes without nvidia-smi: PYTHON; else the one `accelerate` runs under, as `accelerate launch`
# ran train.py (its script's #! line, when that names a python; a pyenv or conda shim is a shell script); else the
# first of python3 and python that has accelerate (`python` may be missing, python 2, or another interpreter than
# accelerate's; find_spec does not import accelerate or torch: milliseconds).
python=""
has_accelerate() {  # the interpreter runs and finds accelerate (find_spec: no import, torch would take seconds)
  "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("accelerate") is None)' 2>/dev/null
}

pick_python() {  # sets python; 1 (and python_problem, with PYTHON) where none will do
  local accelerate line second path c
  python_problem=""
  if [[ -n "${PYTHON:-}" ]]; then  # checked: PYTHON may be set for other tools (build systems), to another python
    python="$PYTHON"
    if ! command -v "$python" >/dev/null 2>&1; then python_problem="is no program this shell can run"; return 1; fi
    if ! has_accelerate "$python"; then python_problem="does not run or has no accelerate"; return 1; fi
    return 0
  fi
  if accelerate="$(command -v accelerate)" && [[ -f "$accelerate" && -r "$accelerate" ]]; then
    { IFS= read -r -n 512 line; IFS= read -r -n 4096 second; } <"$accelerate" 2>/dev/null || true
    if [[ "$line" == '#!'* ]]; then
      read -r line _ <<<"${line#??}"  # the interpreter, without its arguments (#!/usr/bin/python3 -E)
      if [[ "$line" == */sh && "$second" == "'''exec' "* ]]; then
        # pip's wrapper where the interpreter's path holds a space or is too long for #! (distlib:
        # '''exec' "/path/to/python" "$0" "$@"): the path is on the second line, quoted or not
        path="${second#"'''exec' "}"
        if [[ "$path" == '"'* ]]; then path="${path#'"'}"; line="${path%%'"'*}"; else line="${path%% *}"; fi
      fi
      if [[ "$line" == /* && "${line##*/}" == python* && -f "$line" && -x "$line" ]]; then python="$line"; return 0; fi
    fi
  fi
  for c in python3 python; do
    c="$(command -v "$c")" || continue
    if has_accelerate "$c"; then python="$c"; return 0; fi
  done
  return 1
}

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
    { pick_python && "$python" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null; } || echo 0
  fi
}

detect_precision() {  # bf16 needs compute capability 8.0 (Ampere) or newer on every GPU
  local caps min
  if ! command -v nvidia-smi >/dev/null 2>&1; then  # e.g. ROCm: ask torch
    if pick_python && "$python" -c 'import sys, torch; sys.exit(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()))' 2>/dev/null
    then echo bf16; else echo fp16; fi
    return
  fi
  caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true)"
  min="$(awk 'NF { v = $1 + 0; if (m == "" || v < m) m = v } END { print m }' <<<"$caps")"
  if [[ -n "$min" ]] && awk -v v="$min" 'BEGIN { exit !(v >= 8.0) }'; then echo bf16; else echo fp16; fi
}

cpu_threads() {  # one per physical core this process may run on (taskset, SLURM's binding), at most SLURM_CPUS_PER_TASK
  local allowed cores
  allowed="$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null || true)"  # e.g. 0-3,8
  cores="$(lscpu -p=CPU,CORE,SOCKET 2>/dev/null | awk -F, -v allowed="$allowed" '
    BEGIN { n = split(allowed, ranges, ",")
            for (i = 1; i <= n; i++) { split(ranges[i], r, "-"); if (r[2] == "") r[2] = r[1]
                                       for (c = r[1] + 0; c <= r[2] + 0; c++) ok[c] = 1 } }
    /^#/ || (allowed != "" && !(($1 + 0) in ok)) { next }
    !seen[$2 "," $3]++ { count++ }
    END { print count + 0 }')" || cores=0
  ((cores > 0)) || cores="$(nproc 2>/dev/null || echo 1)"  # no lscpu: the CPUs it may run on
  if [[ "${SLURM_CPUS_PER_TASK:-}" =~ ^[0-9]+$ ]] && ((10#$SLURM_CPUS_PER_TASK > 0 && 10#$SLURM_CPUS_PER_TASK < cores))
  then cores=$((10#$SLURM_CPUS_PER_TASK)); fi
  echo "$cores"
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

slurm_nodes=0  # NNODES came from SLURM
if [[ -z "${NNODES:-}" && -n "${SLURM_JOB_ID:-}${SLURM_NNODES:-}" ]]; then
  slurm_nodes=1
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
if ! [[ "$MASTER_PORT" =~ ^[0-9]{1,5}$ ]] || ((10#$MASTER_PORT == 0 || 10#$MASTER_PORT > 65535)); then
  echo "launch.sh: MASTER_PORT='$MASTER_PORT' is not a port (1..65535)." >&2
  exit 2
fi
MASTER_PORT=$((10#$MASTER_PORT))
# a CPU process's threads; OpenMP's list form (4,1: threads per nesting level) gives the first level's
threads="${OMP_NUM_THREADS:-}"
threads="${threads%%,*}"
if [[ -n "${OMP_NUM_THREADS:-}" ]] && { ! [[ "$threads" =~ ^[0-9]{1,4}$ ]] || ((10#$threads == 0)); }; then
  echo "launch.sh: OMP_NUM_THREADS='$OMP_NUM_THREADS' is not a number of threads; unset it for one per core." >&2
  exit 2
fi
[[ -n "$threads" ]] && threads=$((10#$threads))

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
config_shown="'${ACCELERATE_CONFIG:-}'"  # what messages name
if [[ -n "${ACCELERATE_CONFIG:-}" && ! -f "$ACCELERATE_CONFIG" && -n "$pid_dir" ]]; then
  # a <(...) pipe: accelerate opens its config twice and only a regular file (its name's suffix tells JSON from
  # YAML), so it is read once into one of this launch's own (removed at exit)
  text="$(cat -- "$ACCELERATE_CONFIG")"
  suffix=yaml
  json='^[[:space:]]*\{[[:space:]]*("|\})'  # JSON's first key is double-quoted ({name: x} is YAML's flow style)
  [[ "$text" =~ $json ]] && suffix=json
  printf '%s\n' "$text" >"$pid_dir/accelerate_config.$suffix"
  config_shown="'$ACCELERATE_CONFIG' (a pipe)"  # not the copy, which goes when launch.sh ends
  ACCELERATE_CONFIG="$pid_dir/accelerate_config.$suffix"
fi
config_value() {  # a key's first value in ACCELERATE_CONFIG (YAML, or JSON as accelerate also reads, on one line or
  # several: the key and its value quoted or not; a key nested under another, as mpirun_config's, too)
  sed -n -E "s/^([^#]*[{,[:space:]])?[\"']?$1[\"']?[[:space:]]*:[[:space:]]*[\"']?([^\"'#,}[:space:]]*).*/\2/p" \
      "$ACCELERATE_CONFIG" | head -n 1
}
kind=""
if ((gpus == 0)) && [[ -f "${ACCELERATE_CONFIG:-}" ]]; then
  # a GPU-only config on a node without one: accelerate would start its num_processes CPU processes, each loading the
  # data and the model before they found they were not one run (FSDP's own refusal came only under ACCELERATE_USE_CPU)
  kind="$(config_value distributed_type)"
  if [[ "$kind" == MULTI_GPU || "$kind" == FSDP || "$kind" == DEEPSPEED ]]; then
    echo "launch.sh: ACCELERATE_CONFIG=$config_shown asks for $kind, which needs GPUs, and" \
         "this node has none; run on a GPU node, or leave ACCELERATE_CONFIG unset to train with one CPU process." >&2
    exit 2
  fi
fi
# Without a GPU accelerate's launcher starts one process, joined to no other process or node unless its config
# names an mpirun hostfile: NNODES=2 (--num_machines 2) or a MULTI_CPU config's num_processes: 2 started a run of
# its own on every node, or one process, training alone (audit66 S3, S4). torchrun joins them: its command is said.
if ((gpus == 0)); then
  cpu_nodes=1 cpu_per_node=1 cpu_rank="$NODE_RANK" cpu_addr="${MASTER_ADDR:-}" cpu_port="$MASTER_PORT" asked=""
  if [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
    cpu_nodes="$NNODES" asked="NNODES=$NNODES"
    if ((per_node > 1)); then cpu_per_node="$per_node"; fi
  elif [[ "$kind" == MULTI_CPU || "$kind" == NO ]] && [[ "$(config_value mpirun_hostfile)" =~ ^(|null|None|~)$ ]]; then
    procs="$(config_value num_processes)" machines="$(config_value num_machines)"
    if ! [[ "$procs" =~ ^[0-9]{1,6}$ ]] || ((10#$procs == 0)); then procs=1; fi
    if ! [[ "$machines" =~ ^[0-9]{1,6}$ ]] || ((10#$machines == 0)); then machines=1; fi
    procs=$((10#$procs)) machines=$((10#$machines))
    cpu_per_node=$(((procs + machines - 1) / machines))
    asked="ACCELERATE_CONFIG=$config_shown ($kind, num_processes $procs, num_machines $machines)"
    if ((NNODES > 1)); then  # launch.sh's --num_machines wins over the file's
      cpu_nodes="$NNODES" asked="NNODES=$NNODES with $asked"
    elif ((machines > 1)); then  # the file's nodes: its rendezvous, else what to fill in
      cpu_nodes="$machines" cpu_rank="$(config_value machine_rank)" cpu_addr="$(config_value main_process_ip)"
      cpu_port="$(config_value main_process_port)"
      [[ "$cpu_rank" =~ ^[0-9]+$ ]] || cpu_rank=RANK
      [[ "$cpu_addr" =~ ^(|[nN]ull|NULL|[nN]one|NONE|~)$ ]] && cpu_addr=HOST_OF_NODE_0  # (YAML's nulls: null, ~)
      [[ "$cpu_port" =~ ^[0-9]+$ ]] || cpu_port="$MASTER_PORT"
    elif ((procs > 1)); then
      echo "launch.sh: ACCELERATE_CONFIG=$config_shown asks for $kind with $procs processes, but on a node without a" \
           "GPU accelerate starts one, training alone (it joins several only through an mpirun hostfile); for several" \
           "CPU processes run ACCELERATE_USE_CPU=true torchrun --nproc_per_node $procs loop/train.py ... instead, or" \
           "leave ACCELERATE_CONFIG unset to train with one CPU process." >&2
      exit 2
    fi
  fi
  if ((cpu_nodes > 1)); then
    if ((slurm_nodes)); then cpu_rank='$SLURM_NODEID'; fi  # each srun task's own
    recipe="torchrun --nnodes $cpu_nodes --node_rank $cpu_rank --master_addr $cpu_addr --master_port $cpu_port"
    recipe="$recipe --nproc_per_node $cpu_per_node loop/train.py ..."
    if ((slurm_nodes)); then
      recipe="srun --ntasks-per-node=1 bash -c 'ACCELERATE_USE_CPU=true exec $recipe'"
    else
      recipe="ACCELERATE_USE_CPU=true $recipe on every node, each with its own --node_rank,"
    fi
    echo "launch.sh: $asked on a node without a GPU, but launch.sh does not join CPU nodes into one run (accelerate" \
         "would start one process per node, each training alone); run $recipe instead." >&2
    exit 2
  fi
fi
# A batch script of several nodes (or salloc's shell) runs outside any srun step, on the first node alone: launch.sh
# started there as node 0 of SLURM_NNODES, and nothing started the others (the rendezvous waited for them).
# srun sets SLURM_STEP_NUM_TASKS and SLURM_STEP_TASKS_PER_NODE in each task; the batch script has neither.
if ((slurm_nodes && NNODES > 1)) && [[ -z "${SLURM_STEP_NUM_TASKS:-}${SLURM_STEP_TASKS_PER_NODE:-}" ]]; then
  echo "launch.sh: this SLURM job has $NNODES nodes, but launch.sh runs outside an srun step (in the batch script" \
       "itself), so it would start node $NODE_RANK alone and nothing would start the others; run it with srun" \
       "--ntasks-per-node=1 ./launch.sh ... (one task per node), or with NNODES=1 to train on this node alone." >&2
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
elif ((gpus == 0 && per_node > 1)); then  # (it was ignored: the file's processes ran, said nowhere)
  if [[ "$kind" == XLA || ! "$(config_value mpirun_hostfile)" =~ ^(|null|None|~)$ ]]; then  # the file's processes
    echo "launch.sh: NPROC_PER_NODE=$per_node but this node has no GPU, and without one the processes come from" \
         "ACCELERATE_CONFIG=$config_shown (its num_processes); set them there and leave NPROC_PER_NODE unset." >&2
  else  # a NO or MULTI_CPU file starts one process here (its num_processes above 1 is refused above)
    echo "launch.sh: NPROC_PER_NODE=$per_node but this node has no GPU, and ACCELERATE_CONFIG=$config_shown" \
         "(${kind:-NO}) starts one process on it; for several CPU processes run ACCELERATE_USE_CPU=true torchrun" \
         "--nproc_per_node $per_node loop/train.py ... instead." >&2
  fi
  exit 2
fi
cmd=()  # accelerate launch's flags
[[ -n "${ACCELERATE_CONFIG:-}" ]] && cmd+=(--config_file "$ACCELERATE_CONFIG")
if ((gpus > 0 && per_node > 0)); then
  nproc=$((NNODES * per_node))
  precision="${MIXED_PRECISION:-$(detect_precision || true)}"
  cmd+=(--num_processes "$nproc" --mixed_precision "$precision")
  if ((nproc > 1)) && [[ -z "${ACCELERATE_CONFIG:-}" ]]; then cmd+=(--multi_gpu); fi
elif [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
  precision="${MIXED_PRECISION:-no}"
  # threads: OMP_NUM_THREADS, else one per physical core the job may use (accelerate would take every core of
  # the machine: 64 threads on a job's 4 CPUs), said so accelerate does not print its "values not passed" block
  [[ -n "$threads" ]] || threads="$(cpu_threads)"
  cmd+=(--cpu --num_processes 1 --num_cpu_threads_per_process "$threads"
        --mixed_precision "$precision")
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
if ((${nproc:-1} > 1)); then
  cmd=(accelerate launch "${cmd[@]}")
else  # one process: it becomes train.py (see the header); a config for several still goes to their launcher
  if ! pick_python; then
    [[ -n "$signalled" ]] && stopped_before_start  # the probe was stopped by the signal, not missing
    if [[ -n "$python_problem" ]]; then
      echo "launch.sh: PYTHON=$PYTHON $python_problem; set PYTHON to the python of the environment with loop's" \
           "requirements (e.g. PYTHON=/path/to/venv/bin/python), or unset it to let launch.sh find one." >&2
    else
      echo "launch.sh: found no Python with accelerate to run train.py (tried accelerate's own, python3, python);" \
           "set PYTHON to one, e.g. PYTHON=/path/to/venv/bin/python ./launch.sh ..." >&2
    fi
    exit 2
  fi
  cmd=("$python" "$here/loop/accelerate_launch.py" "${cmd[@]}")
fi

if ((dry_run)); then
  printf '%q ' "${cmd[@]}" | sed 's/ $//'
  echo
  exit 0
fi

# ---------------------------------------------------------------- run, passing on stop signals
[[ -n "$signalled" ]] && stopped_before_start
echo "launch.sh: node $NODE_RANK of $NNODES, $gpus GPU(s) here, mixed precision ${precision:-from config}" >&2
# The launcher (or the one training process) gets a process group of its own, so that Ctrl-C reaches the
# training processes only through us. We signal the training processes, not the launcher: torch elastic
# would pass the signal on and SIGKILL them 30 s later, cutting a long checkpoint save short (the previous
# one stays intact). SLURM signals the launcher too: torch elastic (torch 2.9+) is told to leave the stop
# signals to the training processes (it dies of them at once, and they save), rather than SIGKILL them.
export PET_SIGNALS_TO_HANDLE=SIGINT  # torchrun's --signals_to_handle (SIGINT alone: none SLURM sends)
setsid "${cmd[@]}" &
pid=$!
[[ -n "$signalled" ]] && stop_training  # a signal while it was being started
while :; do
  interrupted=0
  rc=0
  wait "$pid" || rc=$?
  ((interrupted)) || break  # a trapped signal makes `wait` return early: wait again
done
# A launcher that was signalled itself (SLURM signals every process of the step) may exit before its training
# processes have finished saving: wait for its whole group, and for every rank (in a session of its own under
# torch elastic) that still holds this LOOP_PID_DIR. Only then is a `preempted` mark there or not.
while kill -0 -- "-$pid" 2>/dev/null || [[ -n "$(live_ranks)" ]]; do sleep 1; done
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
  ((rc != 2)) || exit 2  # train.py's own exit code (one process, no launcher): its line is the last already
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
  note "stopped by SIG$signalled, but the training processes exited (exit code $rc) without saving" \
       "a checkpoint for it (a second signal, or a failure while saving: see above). Run the same command" \
       "again (exit 75, so a job script requeues); with --resume_from_checkpoint auto it continues from" \
       "the newest complete checkpoint of the output_dir if there is one, else starts afresh."
  exit "$EXIT_PREEMPTED"
fi
exit "$rc"
