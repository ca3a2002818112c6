"""Issue #12: nothing silently wrong.

One run per output_dir (the lock), an honest resume (options compared with the checkpoint's),
verified checkpoints (sha256 of every file), no rewrite in place, signal echoes after a stop,
representative --max_*_samples subsets, and every option validated up front.
"""

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
import typing

import pytest

from conftest import FAULTS, ROOT, env, evals, launcher, read_jsonl, run_cli, synthetic, tiny_args
from test_errors import check_user_error, snapshot
from loop import checkpoint_folders
from loop import checkpoint as ckpt
from loop import lock as output_lock
from loop import resume_checks
from loop import storage
from loop.config import TrainConfig, parse_args
from loop.errors import EXIT_PREEMPTED, UserError
from loop.labels import check_classes_present, encode_labels


def small_args(model, data, out, **over):
    base = dict(max_train_samples=96, max_eval_samples=48, num_train_epochs=2, logging_steps=2)
    base.update(over)
    return tiny_args(model, data, out, **base)


def cli(args, **kw):
    return run_cli(args, how="python", check=False, timeout=300, **kw)


def fails_untouched(args, out, *words, script="loop/train.py"):
    before = snapshot(out) if os.path.exists(out) else None
    proc = cli(args, script=script)
    line = check_user_error(proc, *words)
    assert (snapshot(out) if os.path.exists(out) else None) == before, f"{out} changed after {line!r}"
    return line


# ---------------------------------------------------------------- one run per output_dir
@pytest.mark.slow
def test_second_run_refused_while_first_holds_lock_and_kill9_restart_works(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "run")
    args = small_args(tiny_model, tiny_data, out)
    first = subprocess.Popen(launcher(1, "python") + [os.path.join(ROOT, FAULTS)] + args, cwd=ROOT,
                             env=env(LOOP_TEST_SLEEP_AT_STEP="3:120"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        lock = os.path.join(out, output_lock.LOCK_FILE)
        deadline = time.time() + 120
        while not os.path.isfile(os.path.join(out, "metrics.jsonl")) and time.time() < deadline:
            time.sleep(0.2)  # the first log line (step 2) comes just before step 3 and its sleep (which writes nothing)
        assert first.poll() is None
        with open(lock) as f:
            holder = json.load(f)
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname() and holder["started"]
        before = snapshot(out)
        # whatever its flags: --overwrite_output_dir, or a resume
        for extra in (["--overwrite_output_dir", "true"], ["--resume_from_checkpoint", "latest"]):
            t = time.time()
            line = check_user_error(cli(args + extra), "in use", str(first.pid), socket.gethostname(), ".loop.lock")
            assert time.time() - t < 60, line
        assert snapshot(out) == before
        assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    finally:
        first.kill()  # kill -9: the lock stays behind, naming a dead process
        first.wait()
    assert os.path.isfile(lock)
    proc = cli(args + ["--overwrite_output_dir", "true"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [e["epoch"] for e in evals(out)] == [1, 2]  # one run's log, not two interleaved
    assert not os.path.exists(lock)  # released at the end


def test_lock_of_another_host_is_refused_until_deleted(tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    with open(os.path.join(out, output_lock.LOCK_FILE), "w") as f:
        json.dump({"host": "node-17", "pid": 4242, "started": "2026-01-01T00:00:00"}, f)
    with pytest.raises(UserError, match=r"in use by process 4242 on host 'node-17'.*delete"):
        output_lock.RunLock(out).acquire()
    # a resume that may not wait for it (other processes' --ddp_timeout too short) says why
    with pytest.raises(UserError, match=r"in use by process 4242 on host 'node-17' since .*\(no wait: why\); wait"):
        output_lock.RunLock(out).acquire(no_wait="no wait: why")
    os.remove(os.path.join(out, output_lock.LOCK_FILE))  # the documented way to break it
    lock = output_lock.RunLock(out)
    lock.acquire()
    with open(os.path.join(out, output_lock.LOCK_FILE)) as f:
        assert json.load(f)["pid"] == os.getpid()
    lock.release()
    assert os.listdir(out) == []


@pytest.mark.parametrize("content", ["another host", "pid reused", "empty"])
def test_untouched_lock_is_stale_wherever_it_comes_from(tmp_path, content):
    """A node that died cannot release its lock; after a reboot or in a container's pid namespace the pid in
    an old lock of this host may belong to another live process; a lock file may be empty (its node died
    between create and write). A live holder touches the file every 30 s, so one untouched for
    LOCK_STALE_S is taken over; a fresh one is refused."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    holder = {"another host": {"host": "node-17", "pid": 4242},
              "pid reused": {"host": socket.gethostname(), "pid": os.getppid()}}.get(content)
    with open(path, "w") as f:
        if holder:
            json.dump(dict(holder, started="2026-01-01T00:00:00"), f)
    os.utime(path)
    with pytest.raises(UserError, match="is in use by"):
        output_lock.RunLock(out).acquire()
    old = time.time() - output_lock.LOCK_STALE_S - 60
    os.utime(path, (old, old))
    lock = output_lock.RunLock(out)
    lock.acquire()
    with open(path) as f:
        assert json.load(f)["pid"] == os.getpid() and json.load(open(path))["host"] == socket.gethostname()
    lock.release()


def test_lock_of_another_pid_namespace_on_this_host_is_not_judged_by_its_pid(tmp_path):
    """Containers that share the host name (docker --network host, Kubernetes hostNetwork) have pid namespaces of
    their own: a live run's pid there looked dead here (or like ours), so a second run took its lock over and both
    trained into one folder. A lock of this host, boot and namespace whose process is gone is still stale."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    boot, pidns = output_lock.machine_ids()
    if pidns is None:
        pytest.skip("no /proc/self/ns/pid here")
    dead = 2 ** 22 + 12345  # above pid_max: no such process
    with open(path, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead, "boot": boot, "pidns": "pid:[1]", "token": "x"}, f)
    with pytest.raises(UserError, match=f"in use by process {dead}"):
        output_lock.RunLock(out).acquire()
    with open(path, "w") as f:  # the same namespace: that process is gone, the lock is taken over at once
        json.dump({"host": socket.gethostname(), "pid": dead, "boot": boot, "pidns": pidns, "token": "x"}, f)
    lock = output_lock.RunLock(out)
    lock.acquire()
    assert lock.took_over["pid"] == dead
    lock.release()
    assert not os.path.exists(path)


def test_a_lock_of_this_machine_whose_pid_another_process_has_now_is_stale(tmp_path):
    """audit44 F5: a run killed with -9 and requeued onto the same node may find its lock's pid taken by another
    live process; that lock was refused at once (exit 2, so a requeue-on-75 script stopped). The lock records its
    process's start time (/proc/PID/stat): another start time is another process, and the lock is taken over. A
    lock written before that was recorded: another process when it started after the lock's `started`, once the
    lock went untouched for 3 heartbeats. The lock's holder itself, alive, is refused as before."""
    def process_start(pid):  # (state, start time in clock ticks after boot), proc(5)'s fields 3 and 22
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])

    if not os.path.isfile("/proc/self/stat"):
        pytest.skip("no /proc/PID/stat here")
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    boot, pidns = output_lock.machine_ids()
    other = subprocess.Popen(["sleep", "60"])  # the process that has the pid now
    gone = subprocess.Popen(["true"])  # a zombie: exited, not reaped
    try:
        pstart = process_start(other.pid)[1]
        while process_start(gone.pid)[0] != "Z":
            time.sleep(0.01)

        def lock_of(pid, age=0, **record):
            with open(path, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": pid, "boot": boot, "pidns": pidns, "token": "x",
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}, f)
            os.utime(path, (time.time() - age, time.time() - age))

        def taken_over():
            lock = output_lock.RunLock(out)
            lock.acquire()
            lock.release()
            return lock.took_over and lock.took_over["pid"]

        lock_of(other.pid, pstart=pstart)  # its holder: refused, whatever its age before LOCK_STALE_S
        with pytest.raises(UserError, match=rf"in use by process {other.pid} .* \(last touched 0 s ago by a process "
                                            rf"that still runs on this machine\)"):
            output_lock.RunLock(out).acquire()
        lock_of(other.pid, age=300, pstart=pstart)
        with pytest.raises(UserError, match=r"last touched 300 s ago by a process that still runs"):
            output_lock.RunLock(out).acquire()
        lock_of(other.pid, pstart=pstart - 1)  # another process had that pid: stale at once
        assert taken_over() == other.pid
        lock_of(gone.pid, pstart=process_start(gone.pid)[1])
        assert taken_over() == gone.pid
        # a lock without a start time (before 2026-12-04): its `started` is before the process with its pid began
        lock_of(other.pid, started="2026-01-01T00:00:00+0000")
        with pytest.raises(UserError, match="in use by"):
            output_lock.RunLock(out).acquire()  # touched lately: its holder may still be alive
        lock_of(other.pid, age=4 * output_lock.LOCK_HEARTBEAT_S, started="2026-01-01T00:00:00+0000")
        assert taken_over() == other.pid
        later = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() + 3600))
        lock_of(other.pid, age=4 * output_lock.LOCK_HEARTBEAT_S, started=later)  # the process may be its holder (stopped)
        with pytest.raises(UserError, match="in use by"):
            output_lock.RunLock(out).acquire()
        # a lock this version writes records the start time of the process that took it
        lock = output_lock.RunLock(str(tmp_path / "new"))
        lock.acquire()
        with open(lock.path) as f:
            assert json.load(f)["pstart"] == process_start(os.getpid())[1]
        lock.release()
    finally:
        other.kill()
        other.wait()
        gone.wait()


def test_a_refused_lock_says_when_it_was_touched_and_when_it_goes_stale(tmp_path):
    """audit44 F5: another machine's lock untouched for 2 minutes was "alive 123 s ago", though its holder touches
    it every 30 s; the message says when it was last touched, that it is taken over by itself at LOCK_STALE_S, and
    that a resume waits for that (a new run does not)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    with open(path, "w") as f:
        json.dump({"host": "node-17", "pid": 4242, "started": "2026-01-01T00:00:00+0000"}, f)
    old = time.time() - 120
    os.utime(path, (old, old))
    stale = f"{output_lock.LOCK_STALE_S:.0f}"
    with pytest.raises(UserError, match=r"in use by process 4242 on host 'node-17' since 2026-01-01T00:00:00\+0000 "
                                        rf"\(last touched 12\d s ago; a lock untouched for {stale} s \(LOOP_LOCK_STALE_S\) "
                                        r"is taken over by itself, which a resume \(--resume_from_checkpoint\) waits "
                                        r"for\); wait for it to finish"):
        output_lock.RunLock(out).acquire()
    with pytest.raises(UserError, match=rf"\(last touched 12\d s ago; a lock untouched for {stale} s \(LOOP_LOCK_STALE_S\) "
                                        r"is taken over by itself\) \(no wait: why\); wait"):
        output_lock.RunLock(out).acquire(no_wait="no wait: why")


def test_a_lock_taken_over_meanwhile_is_neither_removed_nor_touched(tmp_path):
    """Two starts judging one stale lock: the second must not remove the lock the first just took. A run
    suspended past LOCK_STALE_S (SIGSTOP) whose lock another run took over must not delete it at exit, and
    stops before writing into the folder."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    stale = {"host": "node-17", "pid": 4242, "token": "old"}
    fresh = {"host": "node-18", "pid": 77, "token": "new"}
    with open(path, "w") as f:
        json.dump(fresh, f)  # what the racing start wrote after removing `stale`
    assert output_lock.RunLock(out).remove_stale(stale) is False
    with open(path) as f:
        assert json.load(f) == fresh  # put back, not deleted
    assert sorted(os.listdir(out)) == [output_lock.LOCK_FILE]
    os.remove(path)

    lock = output_lock.RunLock(out)
    lock.acquire()
    lock.check_still_held()  # ours: nothing to say
    with open(path, "w") as f:
        json.dump(fresh, f)  # another run took it over
    with pytest.raises(UserError, match=r"another run \(process 77 on host 'node-18'\) took over the lock"):
        lock.check_still_held()
    lock.release()
    with open(path) as f:
        assert json.load(f) == fresh


def test_a_run_whose_lock_file_was_removed_writes_no_more_lines_and_stops(tiny_model, tiny_data, tmp_path):
    """--output_dir deleted (a scratch purge) under a live run and another run started there: the first went on
    writing its lines into the second's metrics.jsonl until its next best/ or checkpoint, then blamed a suspension
    (audit39 F4). A removed (or replaced) lock file is seen at the next line now (one stat), and the run stops at
    its next write, saying so."""
    from loop import Loop, parse_args

    out = str(tmp_path / "out")

    class Purged(Loop):
        def on_step_end(self):
            if self.state.global_step == 3:
                os.remove(os.path.join(out, output_lock.LOCK_FILE))

    args = tiny_args(tiny_model, tiny_data, out, max_train_samples=96, num_train_epochs=1, logging_steps=1)
    with pytest.raises(UserError, match=r"the lock file '.*\.loop\.lock' was removed while this run held it "
                                        r"\(--output_dir deleted or purged\?\); stopping before writing"):
        Purged(parse_args(args)).fit()
    steps = [r["step"] for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if "loss" in r]
    assert steps and max(steps) <= 3, steps
    assert not os.path.exists(os.path.join(out, "best"))


@pytest.mark.parametrize("case", ["dead", "alive", "deleted", "empty"])
def test_a_resume_waits_for_a_dead_nodes_lock_and_refuses_a_live_one(tmp_path, monkeypatch, case):
    """A job requeued after its node died finds that node's lock, fresh: it was refused (exit 2, so the requeue
    ended for good). A resume now waits while nobody touches it and takes it over once stale; a holder that
    touches it (alive) is refused as before."""
    import threading

    monkeypatch.setattr(output_lock, "LOCK_STALE_S", 2.0)
    monkeypatch.setattr(output_lock, "LOCK_HEARTBEAT_S", 1.2)  # polls every 0.2 s
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    with open(path, "w") as f:
        if case != "empty":  # (empty: its node died between create and write; a resume crashed on it)
            json.dump({"host": "node-17", "pid": 4242, "started": "2026-01-01T00:00:00"}, f)
    with pytest.raises(UserError, match="in use by"):
        output_lock.RunLock(out).acquire()  # a new run does not wait
    # alive: its holder touches it; deleted: as the wait's line advises, to start at once (it was refused, exit 2)
    act = {"alive": lambda: os.utime(path), "deleted": lambda: os.remove(path)}.get(case)
    beat = threading.Timer(0.6, act) if act else None
    if beat:
        beat.start()
    started = time.time()
    lock = output_lock.RunLock(out)
    try:
        if case == "alive":
            with pytest.raises(UserError, match="in use by process 4242 on host 'node-17'"):
                lock.acquire(wait=True)
            assert time.time() - started < 1.8  # refused when touched, not after the whole wait
        else:
            lock.acquire(wait=True)
            with open(path) as f:
                assert json.load(f)["pid"] == os.getpid()
            if case == "deleted":
                assert time.time() - started < 1.8 and lock.took_over is None
            else:
                assert time.time() - started >= 1.5 and lock.took_over == ({"host": "node-17", "pid": 4242,
                                                                            "started": "2026-01-01T00:00:00"}
                                                                           if case == "dead" else {})
    finally:
        if beat:
            beat.cancel()
        lock.release()


def test_lock_created_folder_removed_on_failed_start(tmp_path):
    out = str(tmp_path / "new" / "out")
    lock = output_lock.RunLock(out)
    lock.acquire()
    assert os.path.isfile(os.path.join(out, output_lock.LOCK_FILE))
    lock.release()
    assert not os.path.exists(out)



def live_lock_of_this_machine(path, holder_pid, **over):
    """The lock a live process `holder_pid` of this machine holds (its host, boot, pid namespace and start time)."""
    boot, pidns = output_lock.machine_ids()
    pstart = (output_lock.process_start(holder_pid) or (None, None))[1]
    with open(path, "w") as f:
        json.dump(dict({"host": socket.gethostname(), "pid": holder_pid, "boot": boot, "pidns": pidns, "pstart": pstart,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": "live"}, **over), f)


@pytest.mark.parametrize("pid", [-1, 0, "4242", None])
def test_a_lock_of_this_machine_with_no_usable_pid_is_taken_over_at_once(tmp_path, pid):
    """A lock of this host naming no process (a pid that is not a positive number) cannot be alive: taken over at
    once, not refused for LOOP_LOCK_STALE_S (mutation audit62 m)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    live_lock_of_this_machine(path, os.getppid(), pid=pid)
    lock = output_lock.RunLock(out)
    lock.acquire()
    with open(path) as f:
        assert json.load(f)["pid"] == os.getpid()
    assert lock.took_over["pid"] == pid
    lock.release()
    assert os.listdir(out) == []


@pytest.mark.parametrize("blind", ["another user's", "no /proc"])
def test_a_live_lock_whose_process_cannot_be_looked_at_is_refused(tmp_path, monkeypatch, blind):
    """A live holder of this machine that we may not signal (another user's run: PermissionError) or whose
    /proc/PID/stat cannot be read is alive as far as we can tell: refused, never taken over (mutation audit62 m)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    live_lock_of_this_machine(path, os.getppid())
    if blind == "another user's":
        def kill(pid, sig):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(output_lock.os, "kill", kill)
    else:
        monkeypatch.setattr(output_lock, "process_start", lambda pid: None)
    with pytest.raises(UserError, match=f"in use by process {os.getppid()} on host .*still runs on this machine"):
        output_lock.RunLock(out).acquire()
    with open(path) as f:
        assert json.load(f)["token"] == "live"


def test_a_resume_does_not_wait_for_a_live_lock_of_this_machine(tmp_path, monkeypatch):
    """A resume waits for another machine's untouched lock (its node may have died); a lock whose process runs on
    this machine is alive for sure: refused at once, not after LOOP_LOCK_STALE_S (mutation audit62 m)."""
    monkeypatch.setattr(output_lock, "LOCK_STALE_S", 3.0)
    monkeypatch.setattr(output_lock, "LOCK_HEARTBEAT_S", 1.2)  # (a wait would poll every 0.2 s)
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    live_lock_of_this_machine(path, os.getppid())
    started = time.time()
    with pytest.raises(UserError, match=f"in use by process {os.getppid()}.*still runs on this machine"):
        output_lock.RunLock(out).acquire(wait=True)
    assert time.time() - started < 1.0


def test_a_lock_that_cannot_be_written_is_not_left_behind(tmp_path, monkeypatch):
    """A full disk while writing the lock: one line saying so, and no empty lock file left to refuse the next
    start (mutation audit62 m)."""
    import errno

    out = str(tmp_path)

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(output_lock.os, "fsync", fsync)
        with pytest.raises(UserError, match=r"could not write '.*\.loop\.lock' \(.*No space left.*\); free space"):
            output_lock.RunLock(out).acquire()
    assert os.listdir(out) == []
    lock = output_lock.RunLock(out)
    lock.acquire()  # the next start is not refused
    lock.release()


def test_the_heartbeat_touches_only_a_lock_holding_our_token(tmp_path, monkeypatch):
    """The holder touches its lock every LOCK_HEARTBEAT_S; once another run took it over (this one was suspended),
    touching it would keep that run's lock fresh for it: left alone (mutation audit62 m)."""
    monkeypatch.setattr(output_lock, "LOCK_HEARTBEAT_S", 0.1)
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    lock = output_lock.RunLock(out)
    lock.acquire()
    try:
        old = time.time() - 1000
        os.utime(path, (old, old))
        deadline = time.time() + 5
        while os.stat(path).st_mtime < old + 500 and time.time() < deadline:
            time.sleep(0.05)
        assert os.stat(path).st_mtime > old + 500  # ours: touched
        with open(path, "w") as f:
            json.dump({"host": "node-18", "pid": 77, "token": "new"}, f)  # another run took it over
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert abs(os.stat(path).st_mtime - old) < 1  # theirs: left alone
    finally:
        lock.release()
    with open(path) as f:
        assert json.load(f)["token"] == "new"


# ---------------------------------------------------------------- resume: compared, verified
@pytest.fixture(scope="module")
def finished(tiny_model, tiny_data, tmp_path_factory):
    """A finished 2-epoch run with a checkpoint per epoch (step_6, step_12)."""
    out = str(tmp_path_factory.mktemp("finished") / "run")
    args = small_args(tiny_model, tiny_data, out, checkpointing_steps="epoch")
    proc = cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [s for s, _ in ckpt.list_checkpoints(os.path.join(out, "checkpoints"))]
    assert steps == [6, 12], steps
    return out, args


@pytest.fixture
def run(finished, tmp_path):
    import shutil

    src, args = finished
    out = str(tmp_path / "run")
    shutil.copytree(src, out)
    return out, [out if a == src else a for a in args]


def test_checkpoint_records_checksums(run):
    out, _ = run
    step = os.path.join(out, "checkpoints", "step_12")
    files = ckpt.read_state(step)["files"]
    assert "model.safetensors" in files and any(n.startswith("random_states_") for n in files)
    assert all(files[n] == storage.sha256_file(os.path.join(step, n)) for n in files)
    best = ckpt.read_checksums(os.path.join(out, "best"))
    assert "model.safetensors" in best and "best_metrics.json" in best


def test_resume_refuses_changed_trajectory_options(run):
    out, args = run
    line = fails_untouched(args + ["--resume_from_checkpoint", "latest", "--learning_rate", "0.002",
                                   "--weight_decay", "0.5"], out, "different config", "--learning_rate",
                           "0.001 → 0.002", "--weight_decay", "0.01 → 0.5")
    assert "step_12" in line
    assert "give its best/ as --model_name_or_path" not in line  # only for a longer run
    line = fails_untouched(args + ["--resume_from_checkpoint", "latest", "--num_train_epochs", "5"], out,
                           "different config", "--num_train_epochs")
    assert line.endswith("start a new run in another --output_dir (to train on from this run, give its best/ as "
                         "--model_name_or_path: the learning rate schedule was built for the run's length)."), line


def test_resume_allows_logging_and_checkpoint_options(run):
    out, args = run
    proc = cli(args + ["--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_6"),
                       "--logging_steps", "3", "--checkpointing_steps", "2", "--save_total_limit", "5"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout


def test_resume_options_are_everything_but_an_allow_list():
    """A new option is compared unless someone adds it to the allow-list on purpose."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(resume_checks.RESUME_MAY_CHANGE) <= fields
    for trajectory in ("learning_rate", "weight_decay", "lr_scheduler_type", "warmup_ratio", "max_grad_norm",
                       "seed", "data_seed", "metric", "max_eval_samples", "validation_file", "num_train_epochs"):
        assert trajectory not in resume_checks.RESUME_MAY_CHANGE


def flip_byte(path, offset=-100):
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


def test_latest_skips_damaged_checkpoint_and_gives_same_result(run, finished):
    out, args = run
    base, _ = finished
    newest = os.path.join(out, "checkpoints", "step_12")
    flip_byte(os.path.join(newest, "model.safetensors"))
    proc = cli(args + ["--resume_from_checkpoint", "latest"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = [line for line in proc.stderr.splitlines() if "skipping checkpoint" in line]
    assert len(skipped) == 1 and "step_12" in skipped[0] and "model.safetensors" in skipped[0], proc.stderr[-2000:]
    assert "step_6" in proc.stdout  # resumed from the intact one, redid epoch 2
    from test_resume import max_abs_diff

    assert max_abs_diff(os.path.join(out, "best", "model.safetensors"),
                        os.path.join(base, "best", "model.safetensors")) <= 1e-6
    assert [(e["step"], e["eval_accuracy"]) for e in evals(out)] == [(e["step"], e["eval_accuracy"]) for e in evals(base)]


def test_explicit_damaged_or_truncated_checkpoint_is_one_error(run):
    out, args = run
    step = os.path.join(out, "checkpoints", "step_6")
    opt = [n for n in os.listdir(step) if n.startswith("optimizer")][0]
    with open(os.path.join(step, opt), "r+b") as f:
        f.truncate(100)
    fails_untouched(args + ["--resume_from_checkpoint", step], out, "step_6", "damaged", opt)


def test_damaged_best_is_refused_on_resume(run):
    out, args = run
    flip_byte(os.path.join(out, "best", "model.safetensors"))
    fails_untouched(args + ["--resume_from_checkpoint", "latest"], out, "best", "damaged", "model.safetensors")


def test_latest_when_none_verifies(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (2, 4):
        d = root / f"step_{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"weights %d" % step)
        storage.write_json(str(d / ckpt.STATE_FILE), {"state": {}, "files": ckpt.checksum_tree(str(d))})
    said = []
    assert checkpoint_folders.resolve_resume("latest", str(tmp_path), say=said.append) == str(root / "step_4")
    (root / "step_4" / "model.safetensors").write_bytes(b"weights 5")
    assert checkpoint_folders.resolve_resume("latest", str(tmp_path), say=said.append) == str(root / "step_2")
    assert len(said) == 1 and "step_4" in said[0] and "'model.safetensors' does not match" in said[0]
    (root / "step_2" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="none of the 2 checkpoints"):
        checkpoint_folders.resolve_resume("latest", str(tmp_path))


def test_garbage_rng_state_is_an_error(run):
    """A file that verifies (its checksum updated) but is not an RNG state: an error, not an INFO log."""
    import torch

    out, args = run
    step = os.path.join(out, "checkpoints", "step_6")
    rng = os.path.join(step, "random_states_0.pkl")
    torch.save({"step": 0, "random_state": "garbage"}, rng)
    info = ckpt.read_state(step)
    info["files"]["random_states_0.pkl"] = storage.sha256_file(rng)
    storage.write_json(os.path.join(step, ckpt.STATE_FILE), info)
    proc = cli(args + ["--resume_from_checkpoint", step])
    check_user_error(proc, "random number generators", "random_states_0.pkl", "another checkpoint")


def test_metrics_cut_back_through_a_temporary_file(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        f.write('{"step": 1}\n{"step": 2}\n')

    def crash(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError):
        storage.replace_file(path, b'{"step": 1}\n')
    assert open(path).read() == '{"step": 1}\n{"step": 2}\n'  # untouched, no temporary left
    assert os.listdir(tmp_path) == ["metrics.jsonl"]
    monkeypatch.undo()
    storage.replace_file(path, b'{"step": 1}\n')
    assert open(path).read() == '{"step": 1}\n'


def test_disk_full_while_appending_metrics(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from loop import logs

    cfg = SimpleNamespace(output_dir=str(tmp_path), report_to="none")
    acc = SimpleNamespace(is_main_process=True, is_local_main_process=True, print=lambda *a, **k: None)
    log = logs.RunLog(cfg, acc)
    log.record({"step": 1, "loss": 0.5})
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def seek(self, *a):
            return self.f.seek(*a)

        def fileno(self):
            return self.f.fileno()

        def write(self, data):
            self.f.write(data[:7])  # part of the line, then the disk is full
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("builtins.open", lambda p, mode="r", **k: Full(real_open(p, mode, **k)) if "a" in mode else real_open(p, mode, **k))
    with pytest.raises(UserError, match="could not append.*No space left"):
        log.record({"step": 2, "loss": 0.4})
    monkeypatch.undo()
    assert read_jsonl(log.path) == [{"step": 1, "loss": 0.5}]  # no half line


# ---------------------------------------------------------------- signals
def test_signal_echo_after_stop_still_exits_75(tiny_model, tiny_data, tmp_path):
    """The same SIGTERM again, right after fit() restored the handlers (a launcher's echo 0.1-1 s
    later): before, the default handler killed the process with 143 after the checkpoint."""
    out = str(tmp_path / "run")
    p = cli(small_args(tiny_model, tiny_data, out, checkpointing_steps=100), script=FAULTS,
            LOOP_TEST_SIGNAL_AT_STEP=3, LOOP_TEST_ECHO_AFTER_STOP=1)
    assert p.returncode == EXIT_PREEMPTED, (p.returncode, p.stderr[-3000:])
    assert ckpt.list_checkpoints(os.path.join(out, "checkpoints"))[-1][0] == 3
    assert not os.path.exists(os.path.join(out, output_lock.LOCK_FILE))


# ---------------------------------------------------------------- representative subsets
def sorted_by_label(tmp_path, n=400):
    rows = sorted(synthetic.make_rows(n, seed=3), key=lambda r: r["label"])  # like IMDb: all NEG, then all POS
    path = tmp_path / "sorted.jsonl"
    synthetic.write_jsonl(rows, path)
    return str(path)


def test_max_samples_is_a_seeded_random_subset(tmp_path):
    import datasets

    from loop import data as D

    path = sorted_by_label(tmp_path)
    cfg = TrainConfig(train_file=path, validation_file=path, max_train_samples=100, max_eval_samples=50,
                      output_dir=str(tmp_path / "o"))

    def pick(cfg):
        raw = datasets.DatasetDict({"train": D.load_file(path, "--train_file"), "eval": D.load_file(path, "x")})
        return D.select_and_split(cfg, raw)

    a, b = pick(cfg), pick(cfg)
    labels = a["train"]["label"]
    assert len(labels) == 100 and 30 < labels.count("POSITIVE") < 70, labels.count("POSITIVE")
    assert a["train"]["text"] == b["train"]["text"] and a["eval"]["text"] == b["eval"]["text"]  # same every time
    other = pick(dataclasses.replace(cfg, seed=7))
    assert other["train"]["text"] != a["train"]["text"]


def test_one_class_training_data_is_an_error(tiny_model, tiny_data, tmp_path):
    rows = [r for r in synthetic.make_rows(200, seed=1) if r["label"] == "NEGATIVE"]
    synthetic.write_jsonl(rows, tmp_path / "neg.jsonl")
    out = str(tmp_path / "out")
    fails_untouched(small_args(tiny_model, tiny_data, out, train_file=tmp_path / "neg.jsonl",
                               label_names="NEGATIVE,POSITIVE"), out, "every training example", "'NEGATIVE'")


def test_one_class_eval_data_warns(tmp_path):
    import datasets


    cfg = TrainConfig(output_dir=str(tmp_path / "o"))
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
                                "eval": datasets.Dataset.from_dict({"text": ["c", "d"], "label": [1, 1]})})
    names = encode_labels(cfg, raw)
    with pytest.warns(UserWarning, match="every evaluation example has the label 'LABEL_1'"):
        check_classes_present(raw, names)


def test_huge_label_ids_do_not_allocate(tmp_path):
    import datasets


    cfg = TrainConfig(output_dir=str(tmp_path / "o"))
    raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 10**12]}),
                                "eval": datasets.Dataset.from_dict({"text": ["c"], "label": [0]})})
    with pytest.raises(UserError, match="go up to 1000000000000 but only 2 distinct"):
        encode_labels(cfg, raw)


# ---------------------------------------------------------------- every value validated up front
def bad_values(name, kind):
    """(value, why) pairs that must be refused for an option of this type."""
    args = typing.get_args(kind)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), kind) if optional else kind
    if base is bool:
        return [("maybe", "type"), ("", "empty")]
    if base is int:
        return [("abc", "type"), ("1.5", "type"), ("", "empty"), ("-1", "range"), (str(10**30), "range")]
    if base is float:
        return [("abc", "type"), ("", "empty"), ("-1", "range"), ("nan", "range"), ("inf", "range")]
    if base is str and not optional:
        return [("", "empty"), ("   ", "empty")]
    return []  # optional text: '' means "not given" (checked below)


def test_every_option_rejects_wrong_values(tmp_path):
    """Walks TrainConfig's fields (options added later are covered): each bad value is a UserError naming it."""
    hints = typing.get_type_hints(TrainConfig)
    base = ["--output_dir", str(tmp_path / "out")]
    checked = 0
    for f in dataclasses.fields(TrainConfig):
        for value, why in bad_values(f.name, hints[f.name]):
            if f.name == "output_dir":
                argv = ["--output_dir", value]
            else:
                argv = base + [f"--{f.name}", value]
            with pytest.raises(UserError) as e:
                parse_args(argv)
            msg = str(e.value)
            assert f"--{f.name}" in msg, (f.name, value, msg)
            assert "\n" not in msg
            checked += 1
        if hints[f.name] == typing.Optional[str]:  # '' means not given (--metric: then its default, accuracy)
            given = getattr(parse_args(base + [f"--{f.name}", ""]), f.name)
            assert given == ("accuracy" if f.name == "metric" else None), f.name
    assert checked > 60
    assert not os.path.exists(tmp_path / "out")


def test_yaml_values_are_validated_too(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'out'}\nwarmup_ratio: .nan\n")
    with pytest.raises(UserError, match="--warmup_ratio"):
        parse_args(["--config", str(cfg)])


@pytest.mark.parametrize("flags, words", [
    (["--output_dir", ""], ["--output_dir", "empty"]),
    (["--output_dir", "FILE"], ["--output_dir", "is a file"]),
    (["--report_to", "tensorbored"], ["--report_to", "'tensorbored'", "tensorboard"]),
    (["--lr_scheduler_type", "cosine_with_min_lr"], ["--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs min_lr_rate"]),
    (["--max_length", "2"], ["--max_length 2", "special tokens", "at least 3"]),
    (["--seed", "-3"], ["--seed"]),
], ids=["empty-output", "output-is-file", "tracker", "scheduler-args", "max-length-special", "seed"])
def test_cli_bad_values(tiny_model, tiny_data, tmp_path, flags, words):
    out = str(tmp_path / "out")
    os.makedirs(out)
    (tmp_path / "out" / "notes.txt").write_text("keep\n")
    if "FILE" in flags:
        flags = [str(tmp_path / "out" / "notes.txt") if a == "FILE" else a for a in flags]
    fails_untouched(small_args(tiny_model, tiny_data, out) + flags, out, *words)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_dir(tiny_model, tiny_data, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        fails_untouched(small_args(tiny_model, tiny_data, str(ro / "out")), str(ro), "--output_dir", "not writable")
    finally:
        ro.chmod(0o700)


def test_column_names_quoted(tiny_model, tmp_path):
    (tmp_path / "t.csv").write_text("text, label\n" + "".join(f"good film {i},1\nbad film {i},0\n" for i in range(20)))
    out = str(tmp_path / "out")
    fails_untouched(small_args(tiny_model, tmp_path, out, train_file=tmp_path / "t.csv", validation_file=tmp_path / "t.csv"),
                    out, "--label_column 'label'", "' label'")


# ---------------------------------------------------------------- predict.py
def test_predict_bad_arguments(tiny_model, tmp_path, capsys):
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    broken = tmp_path / "broken"
    broken.mkdir()
    import shutil

    for name in os.listdir(tiny_model):
        shutil.copy(os.path.join(tiny_model, name), broken / name)
    (broken / "model.safetensors").write_bytes(os.urandom(300))
    cases = [
        (["--model", str(tmp_path / "nope"), "x"], ["--model", "not a folder"]),
        (["--model", "", "x"], ["--model", "empty"]),
        (["--model", str(empty), "x"], ["no weights"]),
        (["--model", str(broken), "x"], ["could not be loaded"]),
        (["--model", str(broken), "--batch_size", "0", "x"], ["--batch_size"]),
        (["--model", str(broken), "--batch_size", "many", "x"], ["--batch_size"]),
        (["--model", str(broken), "--batch_size", str(10**30), "x"], ["--batch_size"]),
        (["--model", str(broken), "--file", str(tmp_path / "none.txt")], ["--file", "could not be read"]),
        (["x"], ["--model"]),
    ]
    from types import SimpleNamespace

    from loop import predict
    from loop.errors import run_cli as run_main

    check_user_error(cli(cases[3][0], script="loop/predict.py"), *cases[3][1])  # one through the real script
    for argv, words in cases:  # the rest in-process, through the same run_cli (fast)
        with pytest.raises(SystemExit) as e:
            run_main(predict.run, argv)
        err = capsys.readouterr().err
        check_user_error(SimpleNamespace(returncode=e.value.code, stderr=err), *words)


def test_model_folder_with_corrupt_weights(tiny_model, tiny_data, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    out = str(tmp_path / "out")
    fails_untouched(small_args(str(model), tiny_data, out, from_scratch="false"), out, "could not load the weights",
                    str(model))


def test_dataloader_workers_do_not_hang_the_exit(tiny_model, tiny_data, tmp_path):
    """Worker processes ignore stop signals (a SLURM signal must not kill them before the checkpoint), so
    multiprocessing's exit handler, which SIGTERMs them and waits, hung every run with workers (the default
    on GPUs) after `done`, and after a preemption; the loop now stops them itself on every way out. The
    resumed epoch's skipping loader stops its workers when that epoch ends: they stayed beside the next
    epoch's (6 worker processes instead of 4, to the end of the run)."""
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), num_train_epochs=2, max_train_samples=96,
                     max_eval_samples=40, dataloader_num_workers=2, checkpointing_steps=2)
    p = run_cli(args, how="python", check=False, script=FAULTS, timeout=120, LOOP_TEST_SIGNAL_AT_STEP=3)
    assert p.returncode == 75, p.stderr[-2000:]
    p = run_cli(args + ["--resume_from_checkpoint", "latest"], how="python", script=FAULTS, timeout=120,
                LOOP_TEST_COUNT_WORKERS="1")  # the skipping loader too
    assert "done in" in p.stdout and len(evals(str(tmp_path / "out"))) == 2
    counts = dict(re.findall(r"^step (\d+): (\d+) worker processes$", p.stdout, re.M))
    # 6 steps of 16 examples an epoch, resumed at step 2: steps 3-6 iterate the skipping loader (its 2 workers),
    # 7-12 the training loader's 2, beside the evaluation loader's 2 (persistent) since the first evaluation
    assert counts["6"] == "2" and counts["12"] == "4", counts


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_a_loop_driven_by_its_parts_exits_with_dataloader_workers_alive(tiny_model, tiny_data, tmp_path):
    """setup(), train_loop() stopped mid-epoch, val_loop(), then the end of the script, as a notebook or a benchmark
    drives the loop: fit()'s closing of the DataLoaders never runs, and their workers (which ignore SIGTERM) hung the
    interpreter's exit for good, as bench/throughput.py's worker did on the H200. An exit hook closes them now."""
    script = tmp_path / "parts.py"
    script.write_text(f"""
from loop import Loop, TrainConfig
class Stop(Exception):
    pass
class Parts(Loop):
    def on_step_end(self):
        if self.state.global_step == 2:
            raise Stop
loop = Parts(TrainConfig(model_name_or_path={tiny_model!r}, from_scratch=True, train_file={str(tiny_data / 'train.jsonl')!r},
                         validation_file={str(tiny_data / 'validation.jsonl')!r}, max_train_samples=96, max_eval_samples=40,
                         output_dir={str(tmp_path / 'out')!r}, dataloader_num_workers=2))
loop.setup()
try:
    loop.train_loop(0)
except Stop:
    pass
print("eval_accuracy", loop.val_loop()["eval_accuracy"], flush=True)
""")
    start = time.time()
    p = subprocess.run([sys.executable, str(script)], env=env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "eval_accuracy" in p.stdout, p.stderr[-2000:]
    assert time.time() - start < 60


def test_file_shapes_csv_na_words_and_tsv_quotes(tmp_path):
    """pandas' column-object JSON and an array with a non-row element are one line naming the shape; the words
    NA/None/null/nan in a CSV are text and labels, not missing values; a TSV keeps its quotes (no quoting)."""
    from loop import UserError
    from loop.data import load_file

    (tmp_path / "cols.json").write_text(json.dumps({"text": {"0": "a", "1": "b"}, "label": {"0": "x", "1": "y"}}))
    with pytest.raises(UserError, match="is one JSON object of columns \\('text', 'label'\\), not rows"):
        load_file(str(tmp_path / "cols.json"), "--train_file")
    (tmp_path / "cols.jsonl").write_text(json.dumps({"text": {"0": "a"}, "label": {"0": "x"}}) + "\n")
    with pytest.raises(UserError, match="is one JSON object of columns"):  # pandas' columns, whatever the name
        load_file(str(tmp_path / "cols.jsonl"), "--train_file")
    (tmp_path / "row.jsonl").write_text(json.dumps({"text": ["a", "b"], "label": "x"}) + "\n")  # one row
    assert load_file(str(tmp_path / "row.jsonl"), "--train_file")["text"] == [["a", "b"]]
    (tmp_path / "arr.json").write_text(json.dumps([{"text": "a", "label": "x"}, "oops"]))
    with pytest.raises(UserError, match="element 1 of its array is 'oops', not a row object"):
        load_file(str(tmp_path / "arr.json"), "--train_file")
    (tmp_path / "na.csv").write_text("text,label\nNA is a region,NA\nNone of it,EU\nnan,NA\n")
    ds = load_file(str(tmp_path / "na.csv"), "--train_file")
    assert ds["label"] == ["NA", "EU", "NA"] and ds["text"] == ["NA is a region", "None of it", "nan"]
    (tmp_path / "q.tsv").write_text('text\tlabel\n"great" he said\tPOSITIVE\nbad "film\tNEGATIVE\n')
    ds = load_file(str(tmp_path / "q.tsv"), "--train_file")
    assert ds["text"] == ['"great" he said', 'bad "film'] and ds["label"] == ["POSITIVE", "NEGATIVE"]
    # a header naming a column twice (pandas read the second as 'text.1', silently), an empty array
    (tmp_path / "twice.csv").write_text("text,label,text\na,POSITIVE,b\n")
    with pytest.raises(UserError, match="names the column 'text' twice in its header"):
        load_file(str(tmp_path / "twice.csv"), "--train_file")
    (tmp_path / "spaced.csv").write_text("text, text,label\na,b,POSITIVE\n")  # ' text' is another name
    assert load_file(str(tmp_path / "spaced.csv"), "--train_file").column_names == ["text", " text", "label"]
    (tmp_path / "empty.json").write_text("[ ]\n")
    with pytest.raises(UserError, match="is an empty JSON array: it has no rows"):
        load_file(str(tmp_path / "empty.json"), "--train_file")
    # rows as arrays read as one column named 'text' ("--label_column 'label' is not in the training data"), an
    # empty object as "Instruction 'data' corresponds to no data" (audit57 c F6)
    (tmp_path / "arrays.json").write_text('[["a good film", "POSITIVE"], ["a bad film", "NEGATIVE"]]\n')
    with pytest.raises(UserError, match=r"arrays.json is a JSON array of arrays, not of row objects; write each row as "
                                        r'an object naming its columns, \{"text": "...", "label": "..."\}\.$'):
        load_file(str(tmp_path / "arrays.json"), "--train_file")
    (tmp_path / "object.json").write_text("{ }\n")
    with pytest.raises(UserError, match=r"object.json is an empty JSON object: it has no rows; write an array of row "):
        load_file(str(tmp_path / "object.json"), "--train_file")


def test_a_finish_record_a_full_disk_stops_leaves_no_empty_file(tiny_model, tiny_data, tmp_path, monkeypatch):
    """The finish record was written in place: a full disk left an empty .loop-finished.json, which a re-run with
    auto read as no record, training the steps after its last checkpoint again (audit39 F5). It is written through
    a temporary file now: a failed write leaves none (and a warning)."""
    import errno

    from loop import Loop, parse_args

    real = os.fsync

    def full(fd):
        if ckpt.FINISHED_FILE in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", full)
    out = str(tmp_path / "out")
    with pytest.warns(UserWarning, match=r"could not write '.*\.loop-finished\.json' \(.*No space left on device"):
        Loop(parse_args(tiny_args(tiny_model, tiny_data, out, max_train_samples=64, num_train_epochs=1))).fit()
    assert not [n for n in os.listdir(out) if n.startswith(ckpt.FINISHED_FILE)]


def test_links_planted_in_a_shared_output_dir_are_not_written_through(tiny_model, tiny_data, tmp_path):
    """In a folder others can write to, a link at metrics.jsonl or .loop-finished.json made the run write (and
    truncate) the file it points to, outside the folder (audit38 F5). The log refuses such a link in one line;
    files written through a temporary file replace the link itself."""
    from loop import Loop, parse_args
    from loop.errors import UserError

    victim = tmp_path / "victim.txt"
    victim.write_text("theirs")
    out = tmp_path / "shared"
    out.mkdir()
    os.symlink(victim, out / ckpt.FINISHED_FILE)
    os.symlink(victim, out / "metrics.jsonl.tmp-{}".format(os.getpid()))  # a planted temporary name
    args = tiny_args(tiny_model, tiny_data, str(out), max_train_samples=64, num_train_epochs=1)
    Loop(parse_args(args)).fit()
    assert victim.read_text() == "theirs" and not os.path.islink(out / ckpt.FINISHED_FILE)
    assert json.loads((out / ckpt.FINISHED_FILE).read_text())["step"] == 4
    storage.replace_file(str(out / "metrics.jsonl"), b"{}\n")  # through the planted temporary name: not followed
    assert victim.read_text() == "theirs"

    class Planted(Loop):  # the log replaced by a link while the run goes on
        def on_step_end(self):
            if self.state.global_step == 2:
                os.remove(out / "metrics.jsonl")
                os.symlink(victim, out / "metrics.jsonl")

    with pytest.raises(UserError, match=r"'.*metrics.jsonl' is a symbolic link \(to '.*victim.txt'\); the log is "
                                        r"written into --output_dir itself: remove the link."):
        Planted(parse_args(args + ["--overwrite_output_dir", "true", "--logging_steps", "1"])).fit()
    assert victim.read_text() == "theirs"


def test_a_released_lock_ends_its_heartbeat_thread_at_once(tmp_path):
    """release() ends the heartbeat thread then, not up to LOCK_HEARTBEAT_S (30 s) later: a notebook running short
    fits back to back kept a sleeping thread per run (audit63 k)."""
    import threading
    import time

    before = set(threading.enumerate())
    lock = output_lock.RunLock(str(tmp_path / "out"))
    lock.acquire()
    beats = [t for t in set(threading.enumerate()) - before if t.name == "loop-lock-heartbeat"]
    assert len(beats) == 1
    lock.release()
    started = time.monotonic()
    for t in beats:
        t.join(5)
    assert not any(t.is_alive() for t in beats) and time.monotonic() - started < 5
