"""What accelerate lets a user set outside loop's flags (accelerate launch flags, an accelerate config file,
ACCELERATE_* variables) either runs as asked and is said, or is refused in one line (audit37)."""
import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import ROOT, env, tiny_args
from loop.errors import UserError


def plugin_acc(backend, mode=None):
    from accelerate.utils import DynamoBackend

    plugin = SimpleNamespace(backend=DynamoBackend(backend.upper()), mode=mode)
    return SimpleNamespace(state=SimpleNamespace(dynamo_plugin=plugin))


def test_accelerates_dynamo_becomes_torch_compile_or_is_refused():
    """accelerate's dynamo compiled the DDP wrapper, which its unwrap_model rewrote on rank 0 alone: with
    accumulation the ranks disagreed on skipping the gradient sync and hung until --ddp_timeout; nothing said the
    model was compiled and inputs were not bucketed. Inductor now runs as --torch_compile (accelerate's own compile
    turned off: compiled once), with accelerate's mode; another backend is refused."""
    from accelerate.utils import DynamoBackend

    from loop import TrainConfig, distributed

    cfg, acc = TrainConfig(), plugin_acc("inductor")
    said = distributed.take_over_dynamo(cfg, acc)
    assert cfg.torch_compile and cfg.torch_compile_mode is None and acc.state.dynamo_plugin.backend == DynamoBackend.NO
    assert said.startswith("accelerate's dynamo backend inductor runs as --torch_compile")
    cfg, acc = TrainConfig(), plugin_acc("inductor", mode="max-autotune-no-cudagraphs")
    assert "(mode max-autotune-no-cudagraphs)" in distributed.take_over_dynamo(cfg, acc)
    assert cfg.torch_compile_mode == "max-autotune-no-cudagraphs"
    with pytest.raises(UserError, match=r"--torch_compile_mode reduce-overhead \(CUDA graphs\) cannot accumulate"):
        distributed.take_over_dynamo(TrainConfig(gradient_accumulation_steps=2), plugin_acc("inductor", "reduce-overhead"))
    with pytest.raises(UserError, match=r"accelerate's dynamo mode 'max-autotune' and --torch_compile_mode default "
                                        r"differ"):
        distributed.take_over_dynamo(TrainConfig(torch_compile_mode="default"), plugin_acc("inductor", "max-autotune"))
    with pytest.raises(UserError, match=r"accelerate's dynamo backend 'eager' .* is not one loop runs: it compiles "
                                        r"with inductor through --torch_compile; set the backend to no"):
        distributed.take_over_dynamo(TrainConfig(), plugin_acc("eager"))
    cfg = TrainConfig()
    assert distributed.take_over_dynamo(cfg, plugin_acc("no")) is None and not cfg.torch_compile


@pytest.mark.parametrize("variables, words", [
    ({"ACCELERATE_USE_FSDP": "true"}, ["the accelerate config asks for FSDP, but accelerate runs MULTI_CPU here",
                                       "FSDP needs GPUs"]),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, ["asks for DeepSpeed, but accelerate runs MULTI_CPU"]),
    ({"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2"}, [
        "ACCELERATE_GRADIENT_ACCUMULATION_STEPS=2 is not read by loop: it accumulates --gradient_accumulation_steps "
        "(1 now); pass --gradient_accumulation_steps 2, or unset the variable."]),
])
def test_accelerate_settings_that_would_not_run_are_one_line(monkeypatch, variables, words):
    """An FSDP or DeepSpeed config under ACCELERATE_USE_CPU=true trained plain DDP (accelerate enables them on GPUs
    only), and ACCELERATE_GRADIENT_ACCUMULATION_STEPS did nothing (our plugin wins): both without a word."""
    from accelerate.utils import DistributedType

    from loop import distributed

    for k, v in variables.items():
        monkeypatch.setenv(k, v)
    acc = SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU, gradient_accumulation_steps=1)
    with pytest.raises(UserError) as e:
        distributed.check_world(acc)
    for w in words:
        assert w in str(e.value), str(e.value)
    acc.gradient_accumulation_steps = 2  # the same number as ours: nothing to say
    if "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" in variables:
        distributed.check_world(acc)
    if "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" in variables:
        # accelerate launch exports a DeepSpeed config's value, `auto` too (configure_deepspeed judges it): no refusal
        monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "auto")
        distributed.check_world(SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU,
                                                gradient_accumulation_steps=1))
        monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
        distributed.check_world(SimpleNamespace(num_processes=2, distributed_type=DistributedType.DEEPSPEED,
                                                gradient_accumulation_steps=1))
    if "ACCELERATE_USE_FSDP" in variables:  # where accelerate runs it
        distributed.check_world(SimpleNamespace(num_processes=2, distributed_type=DistributedType.FSDP,
                                                gradient_accumulation_steps=1))


def test_accelerate_dynamo_from_the_environment_compiles_once_inside_the_wrapper(tiny_model, tiny_data, tmp_path):
    """End to end with accelerate reading ACCELERATE_DYNAMO_BACKEND (what accelerate launch --dynamo_backend and a
    config file's dynamo_config set): the run's start turns it into --torch_compile and accelerate compiles nothing."""
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"))
    code = ("import sys; from loop import Loop, parse_args; loop = Loop(parse_args(sys.argv[1:])); acc = loop.start(); "
            "print('RESULT', loop.cfg.torch_compile, acc.state.dynamo_plugin.backend.value)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env(ACCELERATE_DYNAMO_BACKEND="inductor"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT True NO" in proc.stdout and "runs as --torch_compile" in proc.stdout, proc.stdout[-2000:]


SRUN_TWO = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2",
            "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_STEP_TASKS_PER_NODE": "2"}
STEP_MESSAGE = ("SLURM started this command as {0} tasks (SLURM_STEP_NUM_TASKS={0}) that no launcher joined into one "
                "run, and they would each train alone into the same --output_dir; give each task its own --output_dir "
                "if they are runs of their own, else start one launcher per node, which starts the processes: srun "
                "--ntasks-per-node=1 ./launch.sh -- ... (GPU nodes; launch.sh does not join CPU nodes, and there it "
                "says the torchrun command that does), or srun -n 1 accelerate launch (or torchrun) loop/train.py ...")


def slurm_env(monkeypatch, variables):
    for name in [n for n in os.environ if n.startswith("SLURM_")] + ["WORLD_SIZE"]:
        monkeypatch.delenv(name, raising=False)
    for k, v in variables.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("variables, processes, task", [
    # srun -n 2 python loop/train.py, or a per-task sweep (srun -n 2 --multi-prog, one --output_dir per task)
    (SRUN_TWO, 1, {"step": "7.0", "task": "1", "tasks": 2, "pty": False}),
    ({**SRUN_TWO, "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16"}, 1, {"step": "7.0", "task": "1", "tasks": 16,
                                                                           "pty": False}),
    # the shell of srun -n 4 --pty bash (its other tasks ended at once): a run typed there
    ({**SRUN_TWO, "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "0", "SLURM_PTY_PORT": "40123"}, 1,
     {"step": "7.0", "task": "0", "tasks": 4, "pty": True}),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, 1, None),  # a batch script (no step) of 4 tasks
    # srun -n 1 inside an allocation of several tasks (srun sets the step's SLURM_NTASKS)
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "1"}, 1, None),
    # srun --ntasks-per-node=1 ./launch.sh on 2 nodes: its launcher's processes have WORLD_SIZE and one group
    ({**SRUN_TWO, "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "WORLD_SIZE": "16"}, 16, None),
    (SRUN_TWO, 2, None),  # tasks that did form one run (an MPI launch accelerate reads): nothing to refuse
])
def test_slurm_tasks_no_launcher_joined_are_told_apart_by_their_output_dir(monkeypatch, variables, processes, task):
    """audit47 F2: check_world refused every task of a SLURM step of several that no launcher joined, also those that
    are runs of their own: a per-task sweep (each task its own --output_dir), a run typed into the shell of srun -n 4
    --pty bash. It refuses none now: such a task is recorded in the output_dir lock (unjoined_slurm_task), where
    another task of its step finds it (test_tasks_of_one_step_in_one_output_dir_are_refused_in_each)."""
    from accelerate.utils import DistributedType

    from loop import distributed

    slurm_env(monkeypatch, variables)
    acc = SimpleNamespace(num_processes=processes, gradient_accumulation_steps=1,
                          distributed_type=DistributedType.NO if processes == 1 else DistributedType.MULTI_GPU)
    distributed.check_world(acc)
    assert distributed.unjoined_slurm_task(acc) == task


def test_tasks_of_one_step_in_one_output_dir_are_refused_in_each(monkeypatch, tmp_path):
    """srun -n 2 python loop/train.py into one --output_dir (w8): the task that finds the lock held by another task
    of its step is refused, and leaves a mark that stops the holder too, before it writes (check_step_alone waits
    for such a task, srun starting them together) or at its next write when one comes later; the folder is left as
    it was. Tasks of the step with their own folders, a task of another step (a later job over the same folder) and
    two runs of one task (the --pty shell) are not copies of one command."""
    from loop import lock as output_lock

    monkeypatch.setattr(output_lock, "SLURM_TASKS_WAIT_S", 30.0)

    def task(i, step="7.0"):
        return {"step": step, "task": str(i), "tasks": 2, "pty": False}

    out = str(tmp_path / "out")
    holder = output_lock.RunLock(out, slurm=task(0))
    holder.acquire()
    with pytest.raises(UserError) as e:
        output_lock.RunLock(out, slurm=task(1)).acquire()
    assert str(e.value) == STEP_MESSAGE.format(2)
    with pytest.raises(UserError) as e:
        holder.check_step_alone(wait=True)  # (at once: the mark is there)
    assert str(e.value) == STEP_MESSAGE.format(2)
    holder.release()
    assert not os.path.exists(out)  # the lock, the mark and the folder it made: gone

    holder = output_lock.RunLock(out, slurm=task(0))
    holder.acquire()
    holder.check_step_alone()  # alone so far
    with pytest.raises(UserError):
        output_lock.RunLock(out, slurm=task(1)).acquire()  # a task that comes later
    with pytest.raises(UserError) as e:
        holder.check_still_held()  # the holder's next write
    assert str(e.value) == STEP_MESSAGE.format(2)
    holder.release()

    monkeypatch.setattr(output_lock, "SLURM_TASKS_WAIT_S", 0.5)
    sweep = [output_lock.RunLock(str(tmp_path / f"run_{i}"), slurm=task(i)) for i in (0, 1)]  # a per-task sweep
    for lock in sweep:
        lock.acquire()
    for lock in sweep:
        lock.check_step_alone(wait=True)
        lock.check_still_held()
        lock.release()
    os.makedirs(out)
    path = os.path.join(out, output_lock.LOCK_FILE)
    for holder_task, step in ((0, "6.0"), (1, "7.0")):  # another step's run; the same task twice (--pty shell)
        with open(path, "w") as f:
            json.dump({"host": "node-17", "pid": 4242, "token": "t", "slurm_step": step,
                       "slurm_task": str(holder_task)}, f)
        with pytest.raises(UserError, match=r"^--output_dir '.*' is in use by process 4242 on host 'node-17'"):
            output_lock.RunLock(out, slurm=task(1)).acquire()
    assert os.listdir(out) == [output_lock.LOCK_FILE]  # no mark

    # a requeued step: the lock of its dead task 0 (this host, a pid that no longer runs) and a mark an earlier
    # copy left are not a copy now; task 1 takes the folder over and trains (audit49: was refused, every time)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(path, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "token": "t", "slurm_step": "7.0",
                   "slurm_task": "0"}, f)
    mark = path + ".slurm-7.0"
    with open(mark, "w") as f:
        f.write("1\n")
    old = time.time() - 3600
    os.utime(mark, (old, old))
    lock = output_lock.RunLock(out, slurm=task(1))
    lock.acquire()
    lock.check_step_alone(wait=True)
    lock.check_still_held()
    lock.release()



def test_the_first_task_of_a_step_waits_for_a_copy_that_comes_late(monkeypatch, tmp_path):
    """srun starts the tasks of a step together, but one may find the lock a moment after another took it:
    check_step_alone(wait=True) waits up to SLURM_TASKS_WAIT_S for it and then refuses, before the holder writes
    anything (mutation audit62 m); the --pty shell (whose other tasks ended at once) does not wait."""
    import threading

    from loop import lock as output_lock

    monkeypatch.setattr(output_lock, "SLURM_TASKS_WAIT_S", 5.0)

    def task(i, pty=False):
        return {"step": "7.0", "task": str(i), "tasks": 2, "pty": pty}

    out = str(tmp_path / "out")
    holder = output_lock.RunLock(out, slurm=task(0))
    holder.acquire()
    refused = []

    def late_copy():
        try:
            output_lock.RunLock(out, slurm=task(1)).acquire()
        except UserError as e:
            refused.append(str(e))

    late = threading.Timer(0.5, late_copy)
    late.start()
    started = time.time()
    try:
        with pytest.raises(UserError) as e:
            holder.check_step_alone(wait=True)
        assert str(e.value) == STEP_MESSAGE.format(2)
        assert 0.4 < time.time() - started < 4
    finally:
        late.cancel()
        late.join()
        holder.release()
    assert refused == [STEP_MESSAGE.format(2)]
    assert not os.path.exists(out)

    holder = output_lock.RunLock(out, slurm=task(0, pty=True))
    holder.acquire()
    started = time.time()
    holder.check_step_alone(wait=True)  # the --pty shell: at once
    assert time.time() - started < 1
    holder.release()


def test_a_step_mark_is_for_its_holder_whatever_its_file_time(monkeypatch, tmp_path):
    """A mark a task leaves beside another task's lock (srun -n 2 python loop/train.py into one folder) is for that
    holder only. check_step_alone took a mark older than the lock as one left for a dead holder (a requeued step),
    by file times: a requeue within seconds was refused, and a mark stamped by a file server's clock behind ours
    went unheeded. Now the holder's marks go with it: taken over from a dead holder, released, or written after it
    released; any mark beside a lock is for its holder."""
    from loop import lock as output_lock

    monkeypatch.setattr(output_lock, "SLURM_TASKS_WAIT_S", 0.5)

    def task(i):
        return {"step": "7.0", "task": str(i), "tasks": 2, "pty": False}

    out = str(tmp_path / "out")
    os.makedirs(out)
    path = os.path.join(out, output_lock.LOCK_FILE)
    mark = path + ".slurm-7.0"
    # a requeued step at once: the lock of its dead task 0 and the mark task 1 left for it a moment ago (or stamped
    # ahead by the file server's clock); the requeued task 1 takes the folder over and trains
    for stamp in (time.time(), time.time() + 60):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(path, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": dead.pid, "token": "t", "slurm_step": "7.0",
                       "slurm_task": "0"}, f)
        with open(mark, "w") as f:
            f.write("1\n")
        os.utime(mark, (stamp, stamp))
        lock = output_lock.RunLock(out, slurm=task(1))
        lock.acquire()
        assert not os.path.exists(mark)  # gone with the dead holder's lock
        lock.check_step_alone(wait=True)
        lock.check_still_held()
        lock.release()
    # a late copy's mark, stamped a minute back by the file server's clock: the holder stops all the same
    holder = output_lock.RunLock(out, slurm=task(0))
    holder.acquire()
    with pytest.raises(UserError):
        output_lock.RunLock(out, slurm=task(1)).acquire()
    old = time.time() - 60
    os.utime(mark, (old, old))
    with pytest.raises(UserError) as e:
        holder.check_step_alone(wait=True)
    assert str(e.value) == STEP_MESSAGE.format(2)
    holder.release()
    assert os.listdir(out) == []
    # a mark written after the holder's last look, or after it released: the next run of the step finds none
    holder = output_lock.RunLock(out, slurm=task(0))
    holder.acquire()
    copy = output_lock.RunLock(out, slurm=task(1))
    record = copy.read()
    with open(mark, "w") as f:
        f.write("1\n")
    holder.release()
    assert os.listdir(out) == []
    copy.mark_step_copy(record)  # it found the lock, which went before it wrote its mark
    assert os.listdir(out) == []
    lock = output_lock.RunLock(out, slurm=task(0))
    lock.acquire()
    lock.check_step_alone(wait=True)
    lock.release()


def test_a_holder_that_a_late_copy_marked_writes_no_more_metrics_lines(monkeypatch, tmp_path):
    """A task of the step that comes to the folder after SLURM_TASKS_WAIT_S is refused; the holder noticed only at
    its next checkpoint, best/ or end, writing metrics lines meanwhile. Its check before each line
    (Checkpointer.lock_held, one more stat for such a task only) now sees the mark, as it sees a lock taken over:
    no more lines, and the one line at its next write."""
    from loop import lock as output_lock
    from loop.checkpoint import Checkpointer

    out = str(tmp_path / "out")
    holder = output_lock.RunLock(out, slurm={"step": "7.0", "task": "0", "tasks": 2, "pty": False})
    holder.acquire()
    checkpointer = SimpleNamespace(lock=holder)
    assert Checkpointer.lock_held(checkpointer)
    with pytest.raises(UserError):
        output_lock.RunLock(out, slurm={"step": "7.0", "task": "1", "tasks": 2, "pty": False}).acquire()
    assert not Checkpointer.lock_held(checkpointer)
    with pytest.raises(UserError) as e:
        Checkpointer.check_lock(checkpointer)
    assert str(e.value) == STEP_MESSAGE.format(2)
    holder.release()
    assert not os.path.exists(out)

    plain = output_lock.RunLock(out)  # no SLURM task: the one stat of the lock file per line, as before
    plain.acquire()
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: stats.append(a[0]) or real_stat(*a, **k))
    assert Checkpointer.lock_held(SimpleNamespace(lock=plain))
    monkeypatch.undo()
    assert stats == [plain.path]
    plain.release()


@pytest.mark.slow  # a run that trains until a late copy of it comes
def test_a_run_a_late_copy_marked_stops_at_its_next_checkpoint(tiny_model, tiny_data, tmp_path):
    """srun -n 2 python loop/train.py, one task starting long after the other: the holder logs no line after the
    copy came and stops at its next checkpoint with the one line, exit 2."""
    from loop import lock as output_lock

    out = tmp_path / "out"
    args = tiny_args(tiny_model, tiny_data, str(out), logging_steps=1, checkpointing_steps=4, max_steps=6)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/fault_train.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**{**SRUN_TWO, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"},
                                    LOOP_SLURM_TASKS_WAIT_S="0", LOOP_TEST_SLEEP_AT_STEP="3:5"))
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 240
    # the holder sleeps after step 3 (in on_step_end, before step 3's line): the copy comes meanwhile
    while not (metrics.exists() and '"step": 2,' in metrics.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:] if proc.poll() else ""
        time.sleep(0.1)
    with pytest.raises(UserError) as e:
        output_lock.RunLock(str(out), slurm={"step": "7.0", "task": "1", "tasks": 2, "pty": False}).acquire()
    assert str(e.value) == STEP_MESSAGE.format(2)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 2, stderr[-3000:]
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == \
        ["error: " + STEP_MESSAGE.format(2)], stderr[-3000:]
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert not (out / "checkpoints" / "step_4").exists()
    assert not [name for name in os.listdir(out) if name.startswith(output_lock.LOCK_FILE)]


@pytest.mark.slow  # a run that trains, two that stop
def test_srun_tasks_into_one_output_dir_stop_with_one_line_each(tiny_model, tiny_data, tmp_path):
    """A task of a step of two that no launcher joined, alone in its own --output_dir (a per-task sweep), trains (it
    was refused). The whole command line as srun -n 2's two tasks into one --output_dir: the one line on each, exit
    2, nothing written."""
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "loop/train.py"), *tiny_args(tiny_model, tiny_data, str(out))]
    alone = tmp_path / "task_1"
    proc = subprocess.run([*cmd[:-1], str(alone), "--max_steps", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env(**SRUN_TWO, LOOP_SLURM_TASKS_WAIT_S="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (alone / "best").is_dir()
    # (however long one task's start lags: the holder stops as soon as the other leaves its mark)
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env(**{**SRUN_TWO, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)},
                                      LOOP_SLURM_TASKS_WAIT_S="300")) for i in (0, 1)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, stderr[-3000:]
        assert [line for line in stderr.splitlines() if line.startswith("error:")] == \
            ["error: " + STEP_MESSAGE.format(2)], stderr[-3000:]
    assert not out.exists()
