"""Tests written by a mutation audit of loop/lock.py, loop/version.py and loop/callbacks.py (audit71 m17): each one
fails on a small change of the code that a user would notice and passes on the code as it is."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from conftest import ROOT
from loop import lock as output_lock
from loop.errors import UserError


def own_pidns():
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        pytest.skip("no /proc/self/ns/pid here")


def own_boot():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        pytest.skip("no /proc/sys/kernel/random/boot_id here")


def dead_pid():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def write_lock(path, **record):
    with open(path, "w") as f:
        json.dump(record, f)


def test_a_lock_of_this_host_name_from_another_boot_or_pid_namespace_is_not_judged_by_its_pid(tmp_path):
    """Two machines may share a host name (cloned images, containers of one name on two nodes), and a container has
    a pid namespace of its own: a live run there has a pid that looks dead here. Its lock must wait for the age
    rule, not be taken over at once (mutants: this machine's boot id or pid namespace not read, and another
    machine's live run lost its folder to a second run). The same host, boot and namespace with a dead pid: taken
    over at once."""
    boot, pidns = own_boot(), own_pidns()
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    gone = dead_pid()
    for other in ({"boot": "another-boot", "pidns": pidns}, {"boot": boot, "pidns": "pid:[1]"}):
        write_lock(path, host=socket.gethostname(), pid=gone, token="x", started="2026-01-01T00:00:00+0000", **other)
        with pytest.raises(UserError, match=rf"in use by process {gone} on host '{socket.gethostname()}'"):
            output_lock.RunLock(out).acquire()
    write_lock(path, host=socket.gethostname(), pid=gone, token="x", boot=boot, pidns=pidns)
    lock = output_lock.RunLock(out)
    lock.acquire()
    assert lock.took_over["pid"] == gone
    lock.release()
    assert os.listdir(out) == []


def test_a_process_whose_name_holds_a_parenthesis_is_read_from_its_stat(tmp_path):
    """/proc/PID/stat is "pid (name) state ...", and the name may hold ") ": the fields are read after the last ")"
    (mutant: after the first, and such a holder's state and start time were garbage, so its live run's lock was taken
    over as another process's)."""
    if not os.path.isfile("/proc/self/stat"):
        pytest.skip("no /proc/PID/stat here")
    odd = tmp_path / "s) 1 2 3"
    os.symlink("/bin/sleep", odd)
    proc = subprocess.Popen([str(odd), "30"])
    try:
        deadline = time.time() + 5
        while "s) 1 2 3" not in open(f"/proc/{proc.pid}/stat").read() and time.time() < deadline:
            time.sleep(0.01)  # (the name is the new program's once it is exec'd)
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert output_lock.process_start(proc.pid) == (fields[0], int(fields[19]))
        assert fields[0] in "RSD"
    finally:
        proc.kill()
        proc.wait()


def test_a_process_started_before_a_legacy_locks_start_may_be_its_holder(tmp_path):
    """A lock of a loop before 2026-12-04 has no process start time: a live process with its pid is another one only
    when it started after the lock's "started" plus a minute (mutants: an hour's slack the other way, and a live
    holder's lock was taken over; a "started" without a UTC offset, as older loops wrote it, not read)."""
    if not os.path.isfile("/proc/stat"):
        pytest.skip("no /proc/stat here")
    ticks = output_lock.process_start(os.getpid())[1]
    now = time.time()
    assert not output_lock.started_after(ticks, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)))
    assert not output_lock.started_after(ticks, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now - 50)))
    assert output_lock.started_after(ticks, "2020-01-01T00:00:00+0000")
    assert output_lock.started_after(ticks, "2020-01-01T00:00:00")  # local time, no offset
    assert not output_lock.started_after(ticks, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)))
    assert not output_lock.started_after(ticks, None) and not output_lock.started_after(ticks, "yesterday")


def test_a_legacy_lock_touched_within_three_heartbeats_is_its_live_holders(tmp_path):
    """A lock without a process start time (a loop before 2026-12-04) whose pid another process has is taken over only
    once it went untouched for 3 heartbeats: a live holder touches it every LOCK_HEARTBEAT_S, and a busy one may miss
    one (mutant: after one heartbeat, and a live run's lock was taken over)."""
    if not os.path.isfile("/proc/stat"):
        pytest.skip("no /proc/PID/stat here")
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    boot, pidns = output_lock.machine_ids()
    other = subprocess.Popen(["sleep", "30"])
    try:
        for age, refused in ((2 * output_lock.LOCK_HEARTBEAT_S, True), (4 * output_lock.LOCK_HEARTBEAT_S, False)):
            write_lock(path, host=socket.gethostname(), pid=other.pid, boot=boot, pidns=pidns, token="x",
                       started="2026-01-01T00:00:00+0000")
            os.utime(path, (time.time() - age, time.time() - age))
            lock = output_lock.RunLock(out)
            if refused:
                with pytest.raises(UserError, match=f"in use by process {other.pid}"):
                    lock.acquire()
            else:
                lock.acquire()
                assert lock.took_over["pid"] == other.pid
                lock.release()
    finally:
        other.kill()
        other.wait()


def test_a_lock_unreadable_for_a_moment_is_still_ours(tmp_path):
    """A lock its holder cannot read for a moment (a busy or full filesystem) is no sign of another run: the holder
    goes on, keeps touching it, and removes it at the end (mutant: taken as lost, so the heartbeat stopped, another
    run took a live run's lock over once it went stale, and the release left it behind)."""
    out = str(tmp_path)
    lock = output_lock.RunLock(out)
    lock.acquire()
    with open(lock.path, "w") as f:
        f.write("{")
    assert lock.still_ours() and lock.lost is None
    lock.check_still_held()
    lock.release()
    assert os.listdir(out) == []


def test_the_lock_records_its_holder_and_every_process_reads_its_token(tmp_path):
    """The lock file names its run (host, pid, a start time with its UTC offset, the command line) and holds the
    token every process of the run compares (lock_token: Checkpointer.check_shared_output_dir); no lock, an unreadable
    one or one that is not a JSON object has no token (mutants: the token never read, so every rank of a run on a
    shared folder was refused; a garbled lock an uncaught ValueError)."""
    out = str(tmp_path)
    assert output_lock.lock_token(out) is None
    lock = output_lock.RunLock(out)
    lock.acquire()
    try:
        with open(lock.path) as f:
            record = json.load(f)
        assert output_lock.lock_token(out) == lock.token == record["token"]
        assert (record["host"], record["pid"], record["argv"]) == (socket.gethostname(), os.getpid(), sys.argv)
        assert time.strptime(record["started"], "%Y-%m-%dT%H:%M:%S%z")
    finally:
        lock.release()
    for text in ("{", "[1, 2]", ""):
        with open(os.path.join(out, output_lock.LOCK_FILE), "w") as f:
            f.write(text)
        assert output_lock.lock_token(out) is None


def test_an_output_dir_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """A lock that cannot be created (a read-only or another user's folder: PermissionError; root writes anywhere,
    so this is what a user sees) is one line naming the folder and the fix, not a traceback (mutant: only a missing
    folder caught)."""
    import errno

    out = str(tmp_path)

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(output_lock.os, "open", refuse)
    with pytest.raises(UserError, match=r"^--output_dir '.*' is not writable \(.*Permission denied.*\); fix its "
                                        r"permissions or choose another folder\.$"):
        output_lock.RunLock(out).acquire()


def test_an_output_dir_made_meanwhile_is_used_and_one_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    """Starts beside each other: a parent removed meanwhile by a failed start (release) is made again, and a folder
    another start made meanwhile is used (the lock decides between them), where both were an error (mutants); a
    folder that cannot be made (under a file) is one line naming it and the fix, and leaves nothing behind."""
    real = output_lock.make_folders
    calls = []

    def parent_removed_once(path):
        calls.append(path)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory")
        return real(path)

    out = str(tmp_path / "a" / "out")
    monkeypatch.setattr(output_lock, "make_folders", parent_removed_once)
    lock = output_lock.RunLock(out)
    lock.acquire()
    lock.release()
    assert len(calls) == 2 and os.listdir(tmp_path) == []  # the folders it made, removed again

    def made_by_another(path):
        os.makedirs(path)
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(output_lock, "make_folders", made_by_another)
    lock = output_lock.RunLock(out)
    lock.acquire()
    lock.release()
    assert os.listdir(out) == []  # (another start's folder: left)
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"^--output_dir '.*file/out' cannot be created \(.*Not a directory.*\); "
                                        r"choose a writable folder\.$"):
        output_lock.RunLock(str(tmp_path / "file" / "out")).acquire()


def test_a_lock_that_keeps_reappearing_is_refused_not_taken(tmp_path, monkeypatch):
    """Starts racing over a stale lock: when the lock we judged is gone and another is there each time, the start
    gives up with one line after a few tries, holding nothing (mutant: it went on as if it held the lock, and two
    runs wrote into one folder)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    write_lock(path, host=socket.gethostname(), pid=dead_pid(), token="x")
    monkeypatch.setattr(output_lock.RunLock, "remove_stale", lambda self, holder: False)
    lock = output_lock.RunLock(out)
    with pytest.raises(UserError, match=r"could not take the lock '.*\.loop\.lock' \(it keeps reappearing\); another "
                                        r"run is starting in --output_dir"):
        lock.acquire()
    assert not lock.held
    with open(path) as f:
        assert json.load(f)["token"] == "x"


def test_a_stale_lock_its_run_released_meanwhile_is_no_dead_run(tmp_path, monkeypatch):
    """A stale lock that is gone when this start moves it aside (its run, suspended past LOOP_LOCK_STALE_S, went on
    and released it; or another start took it over and finished) was not taken over by this start: took_over stays
    None, so --resume_from_checkpoint auto does not treat a finished run as a dead one (mutants: took_over set)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    write_lock(path, host=socket.gethostname(), pid=dead_pid(), token="x")
    real_rename = os.rename

    def released_first(src, dst):
        os.remove(src)  # its run released it a moment before
        return real_rename(src, dst)

    monkeypatch.setattr(output_lock.os, "rename", released_first)
    lock = output_lock.RunLock(out)
    lock.acquire()
    monkeypatch.undo()
    assert lock.held and lock.took_over is None
    lock.release()
    assert os.listdir(out) == []


def test_a_dead_slurm_tasks_lock_is_taken_over_by_any_run_with_the_mark_left_for_it(tmp_path):
    """The lock of a dead task of a SLURM step no launcher joined is taken over by whatever run comes next (a plain
    run, or a task of another step) and the mark another task left for that holder goes with it, not a mark of the
    new run's own step (mutant: the new run's step read, and a plain run crashed on the lock of a SLURM task)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    for slurm in (None, {"step": "8.0", "task": "0", "tasks": 2, "pty": False}):
        write_lock(path, host=socket.gethostname(), pid=dead_pid(), token="t", slurm_step="7.0", slurm_task="0")
        for step in ("7.0", "8.0"):
            with open(f"{path}.slurm-{step}", "w") as f:
                f.write("1\n")
        lock = output_lock.RunLock(out, slurm=slurm)
        lock.acquire()
        assert lock.took_over["slurm_step"] == "7.0"
        assert not os.path.exists(f"{path}.slurm-7.0") and os.path.exists(f"{path}.slurm-8.0")
        os.remove(f"{path}.slurm-8.0")
        lock.release()
        assert os.listdir(out) == []


def test_a_lock_removed_between_create_and_read_is_taken(tmp_path, monkeypatch):
    """A lock found (O_EXCL failed) but gone when read (its run released it that moment) is free: taken at once, not
    refused as an unreadable lock (mutant)."""
    out = str(tmp_path)
    real_open = os.open
    calls = []

    def open_once_taken(path, flags, *a):
        calls.append(path)
        if len(calls) == 1:
            raise FileExistsError(17, "File exists")
        return real_open(path, flags, *a)

    monkeypatch.setattr(output_lock.os, "open", open_once_taken)
    lock = output_lock.RunLock(out)
    lock.acquire()
    monkeypatch.undo()
    assert len(calls) == 2 and lock.held and lock.took_over is None
    lock.release()


def test_a_lock_read_while_its_holder_writes_it_names_that_holder(tmp_path):
    """A lock read between its holder's O_EXCL create and its write is empty: read again a moment later, so the
    refusal names that run (mutant: "an unreadable lock file" at once)."""
    out = str(tmp_path)
    path = os.path.join(out, output_lock.LOCK_FILE)
    open(path, "w").close()
    writer = threading.Timer(0.05, write_lock, (path,), dict(host="node-17", pid=4242, token="x"))
    writer.start()
    try:
        with pytest.raises(UserError, match=r"in use by process 4242 on host 'node-17'"):
            output_lock.RunLock(out).acquire()
    finally:
        writer.join()


def test_an_earlier_fit_of_this_process_that_raised_is_not_a_dead_run(tmp_path):
    """A fit() that raised in a notebook keeps its lock until the process ends; the next fit() in that process takes
    it as its own, not as a dead run's (took_over: --resume_from_checkpoint auto would then replace a finished run's
    best/); a lock with our pid that this process did not take is a dead run's (mutants)."""
    out = str(tmp_path)
    first = output_lock.RunLock(out)
    first.acquire()  # (never released: the fit raised)
    again = output_lock.RunLock(out)
    again.acquire()
    assert again.held and again.took_over is None
    again.release()
    first.release()
    assert os.listdir(out) == []
    # a lock with our pid that no fit() of this process took: a dead process that had our pid (a requeued job in a
    # container of its own, whose first process has the same pid each time) is a dead run
    path = os.path.join(out, output_lock.LOCK_FILE)
    write_lock(path, host=socket.gethostname(), pid=os.getpid(), token="old")
    lock = output_lock.RunLock(out)
    lock.acquire()
    assert lock.took_over == {"host": socket.gethostname(), "pid": os.getpid(), "token": "old"}
    lock.release()


def test_a_run_of_another_live_thread_of_this_process_is_refused_not_taken_over(tmp_path):
    """Two fit() at once in one process (threads of a sweep, into one folder): the second was taken as the first's
    abandoned lock (our own pid) and both wrote into one folder (m17 F2). Refused with its thread named while that
    run goes on (inside fit(): run_going), reached by another path too (a link); taken over once the run ended,
    though its thread lives on (a pool's worker), with no record of a dead run (rev F1, F3)."""
    out = str(tmp_path / "run")
    os.symlink(out, str(tmp_path / "link"), target_is_directory=True)
    first = output_lock.RunLock(out)
    holding, done, ended = threading.Event(), threading.Event(), threading.Event()

    def run():
        with output_lock.run_going():
            first.acquire()
            holding.set()
            done.wait(30)
        ended.set()
        time.sleep(30)  # the thread lives on without the run (and without releasing its lock)

    worker = threading.Thread(target=run, name="sweep-worker-1", daemon=True)
    worker.start()
    assert holding.wait(30)
    for folder in (out, str(tmp_path / "link")):
        second = output_lock.RunLock(folder)
        with pytest.raises(UserError) as refused:
            second.acquire()
        assert str(refused.value).startswith(f"--output_dir '{folder}' is in use by another run of this process "
                                             f"(thread 'sweep-worker-1', since ")
        assert str(refused.value).endswith("); wait for it to finish, or use another --output_dir.")
        assert not second.held and output_lock.lock_token(out) == first.token
    with open(first.path, "r+") as f:  # its record as another thread finds it while it is being written: none yet
        record = f.read()
        f.truncate(0)
    with pytest.raises(UserError, match=r"in use by another run of this process \(thread 'sweep-worker-1', "):
        output_lock.RunLock(out).acquire()
    with open(first.path, "w") as f:
        f.write(record)
    done.set()
    assert ended.wait(30) and worker.is_alive()
    second = output_lock.RunLock(out)  # its run has ended without releasing: an abandoned lock of ours
    second.acquire()
    assert second.held and second.took_over is None and output_lock.lock_token(out) == second.token
    first.release()  # (not ours any more: the file stays, and so does the record of who holds it)
    assert output_lock.lock_token(out) == second.token
    assert output_lock.RunLock._held_here[os.path.realpath(second.path)] is second
    second.release()
    assert os.listdir(out) == [] and output_lock.RunLock._held_here.get(os.path.realpath(second.path)) is None


def test_a_run_started_inside_a_going_run_of_the_same_thread_is_refused(tmp_path):
    """--eval_only into the run's own folder from a callback of its fit() (the same thread): it took the training
    run's lock as an abandoned one of this process, and the training run then stopped with "the lock file ... was
    removed (--output_dir deleted or purged?)" (rev2 F2: runs are compared, not threads)."""
    from types import SimpleNamespace

    from loop.checkpoint_folders import check_writable

    out = str(tmp_path)
    with output_lock.run_going():  # the training run's fit()
        training = output_lock.RunLock(out)
        training.acquire()
        with output_lock.run_going():  # an --eval_only Loop's validate(), made in a callback
            with pytest.raises(UserError, match=r"is in use by a training run \(process \d+ on host "):
                check_writable(SimpleNamespace(is_main_process=True, num_processes=1), out)
            with pytest.raises(UserError, match=r"in use by another run of this process \(thread 'MainThread', "):
                output_lock.RunLock(out).acquire()
        assert training.still_ours() and training.lost is None
    training.release()


def test_a_start_while_a_run_releases_its_lock_takes_no_dead_run_over(tmp_path, monkeypatch):
    """release() forgets its entry after it removed its file: a start in another thread in between found our pid
    with no entry, took the lock over as a dead run's (took_over set: --resume_from_checkpoint auto then treats
    the folder's run as one that died) (rev2 F4)."""
    out = str(tmp_path)
    first = output_lock.RunLock(out)
    first.acquire()
    real_remove, started = os.remove, {}

    def remove(path, *args, **kwargs):
        if path == first.path and not started:  # another thread's start at this very moment
            started["lock"] = second = output_lock.RunLock(out)
            worker = threading.Thread(target=second.acquire)
            worker.start()
            worker.join(30)
            return None  # (the file is the new run's now)
        return real_remove(path, *args, **kwargs)

    monkeypatch.setattr(output_lock.os, "remove", remove)
    first.release()
    monkeypatch.undo()
    second = started["lock"]
    assert second.held and second.took_over is None
    second.release()


def test_a_going_runs_entry_does_not_refuse_another_runs_dead_lock_in_its_folder(tmp_path):
    """The going run's entry is for its own lock only: a dead run's lock found in that folder (ours was taken over
    meanwhile, and the taker died) is stale and taken over as a dead run's (rev F5: the token compared)."""
    out = str(tmp_path)
    with output_lock.run_going():
        first = output_lock.RunLock(out)
        first.acquire()
    holding, done = threading.Event(), threading.Event()
    with output_lock.run_going():  # the run goes on, in another thread than the next start
        first.run = output_lock._current_run()
        first.thread = threading.Thread(target=lambda: (holding.set(), done.wait(30)), daemon=True)
        first.thread.start()
        holding.wait(30)
        write_lock(first.path, host="node-9", pid=77, token="theirs")
        os.utime(first.path, (0, 0))
        second = output_lock.RunLock(out)
        second.acquire()
        done.set()
    assert second.held and second.took_over == {"host": "node-9", "pid": 77, "token": "theirs"}
    second.release()
    first.release()


def test_scoring_into_a_going_runs_folder_is_refused_from_its_own_process_too(tmp_path):
    """--eval_only into RUN/best while a thread of this process trains into RUN: the lock's own pid made it a dead
    run's, and the scores went beside a best/ the training replaces (rev F2)."""
    from types import SimpleNamespace

    from loop.checkpoint_folders import check_writable

    run = str(tmp_path / "run")
    holding, done = threading.Event(), threading.Event()
    training = output_lock.RunLock(run)

    def train():
        with output_lock.run_going():
            training.acquire()
            holding.set()
            done.wait(30)
        training.release()

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    try:
        assert holding.wait(30)
        acc = SimpleNamespace(is_main_process=True, num_processes=1)
        with pytest.raises(UserError, match=r"is in use by a training run \(process \d+ on host"):
            check_writable(acc, os.path.join(run, "best"))
    finally:
        done.set()
        worker.join(30)
    lock = check_writable(SimpleNamespace(is_main_process=True, num_processes=1), os.path.join(run, "best"))
    if lock is not None:
        lock.release()


def test_a_lock_interrupted_while_its_record_is_written_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C in a slow fsync (NFS) after the lock was registered: no entry, no file, so no later run of this
    process is refused by it (rev F4)."""
    out = str(tmp_path)

    def interrupted(fd):
        raise KeyboardInterrupt

    lock = output_lock.RunLock(out)
    with output_lock.run_going():
        monkeypatch.setattr(output_lock.os, "fsync", interrupted)
        with pytest.raises(KeyboardInterrupt):
            lock.acquire()
        monkeypatch.undo()
        assert os.listdir(out) == [] and output_lock.RunLock._held_here.get(os.path.realpath(lock.path)) is None
        done = threading.Event()
        other = threading.Thread(target=lambda: (output_lock.RunLock(out).acquire(), done.set()))
        other.start()
        other.join(30)
    assert done.is_set()


def test_a_replaced_lock_file_stops_the_metrics_lines_at_once(tmp_path):
    """Between heartbeats, each metrics line first checks with one stat that the lock file is still the one this run
    created; a lock file replaced by another run's (a purged folder where another run started) stops the lines
    (mutant: only a removed one did)."""
    from loop.checkpoint import Checkpointer

    out = str(tmp_path)
    lock = output_lock.RunLock(out)
    lock.acquire()
    checkpointer = SimpleNamespace(lock=lock)
    try:
        assert Checkpointer.lock_held(checkpointer)
        write_lock(lock.path + ".new", host="node-18", pid=77, token="new")
        os.replace(lock.path + ".new", lock.path)  # (a file of its own: a removed one's inode may be reused)
        assert not Checkpointer.lock_held(checkpointer)
        assert lock.lost == {"host": "node-18", "pid": 77, "token": "new"}
    finally:
        lock.release()
    with open(lock.path) as f:
        assert json.load(f)["token"] == "new"


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_a_lock_file_of_another_run_at_the_same_inode_stops_the_metrics_lines(tmp_path, monkeypatch):
    """audit71 m17 F1: a purged folder's next lock file may be given the inode number of the one this run created
    (seen on ext4); one stat compared only device and inode, so this run wrote its metrics lines into the other run's
    metrics.jsonl until its next heartbeat (30 s). The file's time is compared too: another run's record written
    into the same inode stops the lines; the heartbeat's own touches keep the check one stat."""
    from loop.checkpoint import Checkpointer

    monkeypatch.setattr(output_lock, "LOCK_HEARTBEAT_S", 0.02)
    lock = output_lock.RunLock(str(tmp_path))
    lock.acquire()
    checkpointer = SimpleNamespace(lock=lock)
    try:
        created = os.stat(lock.path).st_mtime_ns
        deadline = time.monotonic() + 10
        while os.stat(lock.path).st_mtime_ns == created and time.monotonic() < deadline:
            time.sleep(0.02)  # a heartbeat touched it
        assert os.stat(lock.path).st_mtime_ns != created
        lock.held = False  # no more touches; the check below is of the file as it is
        lock._released.set()
        for thread in threading.enumerate():
            if thread.name == "loop-lock-heartbeat":
                thread.join(10)
        assert lock.same_file() and Checkpointer.lock_held(checkpointer)
        inode = os.stat(lock.path).st_ino
        with open(lock.path, "w") as f:  # the same inode, another run's record and time
            json.dump({"host": "node-18", "pid": 77, "token": "new"}, f)
        os.utime(lock.path, ns=(2, 2))
        assert os.stat(lock.path).st_ino == inode
        lock.held = True
        assert not Checkpointer.lock_held(checkpointer)
        assert lock.lost == {"host": "node-18", "pid": 77, "token": "new"}
    finally:
        lock.release()


class OneBeat:
    """The heartbeat's `released` event, as the heartbeat sees it: one period passes, then the lock is released."""
    beats = 0

    def wait(self, seconds):
        self.beats += 1
        return self.beats > 1


def test_the_heartbeat_takes_no_file_it_cannot_read_for_its_own(tmp_path, monkeypatch):
    """audit71 rev F1: the heartbeat touched and recorded the lock path after reading it, two lookups apart; a lock
    replaced meanwhile (another start between its create and its write: an empty file) was taken for ours, and the
    metrics lines went on into the other run's folder until the next heartbeat. rev3 F2: an unreadable lock at
    another inode (another user's, mode 0600) was ours to the run, which went on writing and at its end removed it.
    Now a lock it cannot read at another inode than the one it made is a lock it lost, and release() leaves it."""
    from loop.checkpoint import Checkpointer

    monkeypatch.setattr(output_lock, "LOCK_HEARTBEAT_S", 1000.0)  # no heartbeat of its own during the test
    lock = output_lock.RunLock(str(tmp_path))
    lock.acquire()
    try:
        os.rename(lock.path, lock.path + ".gone")  # ours goes (kept: its inode is not reused)
        open(lock.path, "w").close()  # another start: created, not yet written
        before = os.stat(lock.path).st_mtime_ns
        lock._heartbeat(OneBeat())
        assert os.stat(lock.path).st_mtime_ns == before  # not touched as ours
        assert lock.lost == {"replaced": True} and not Checkpointer.lock_held(SimpleNamespace(lock=lock))
        with pytest.raises(UserError, match=r"was replaced, while this run held it, by one this run cannot read "
                                            r"\(another run's or another user's\); stopping before writing"):
            lock.check_still_held()
        record = json.load(open(lock.path + ".gone"))  # (rev5 F1) our own record found there again (a filesystem
        os.replace(lock.path + ".gone", lock.path)  # that renumbered our file for a while): ours, the run goes on
        lock.check_still_held()
        assert lock.lost is None and record["token"] == lock.token
        write_lock(lock.path, host="node-18", pid=77, token="theirs")  # (rev4 F2) another's record names it
        assert not lock.still_ours() and lock.lost == {"host": "node-18", "pid": 77, "token": "theirs"}
    finally:
        lock.release()
    assert os.path.exists(lock.path)  # the other run's lock stays


def test_a_live_runs_lock_it_cannot_read_is_kept_fresh(tmp_path, monkeypatch):
    """audit71 rev2 F1: a lock file this run made but cannot read (a tool emptied it, its mode changed) is still
    touched by the heartbeat, so the next start does not take it over as stale (the live run then stopped, "suspended
    for more than 600 s?"); the metrics lines go on."""
    from loop.checkpoint import Checkpointer

    monkeypatch.setattr(output_lock, "LOCK_HEARTBEAT_S", 1000.0)
    lock = output_lock.RunLock(str(tmp_path))
    lock.acquire()
    try:
        open(lock.path, "w").close()  # emptied: the same file, no record
        os.utime(lock.path, (1, 1))  # and untouched for decades
        assert output_lock.RunLock(str(tmp_path)).is_stale(None)
        lock._heartbeat(OneBeat())
        assert time.time() - os.stat(lock.path).st_mtime < 60
        assert not output_lock.RunLock(str(tmp_path)).is_stale(None)
        assert Checkpointer.lock_held(SimpleNamespace(lock=lock)) and lock.lost is None
    finally:
        lock.release()


def test_a_stale_unreadable_lock_another_start_took_over_meanwhile_stays(tmp_path):
    """audit71 m17 F4: start B judged an empty lock stale (its node died between create and write) while start A
    took it over; B's remove_stale then finds A's record, not the unreadable file it judged, and leaves it (it
    removed A's lock, and both ran in one folder)."""
    path = os.path.join(str(tmp_path), output_lock.LOCK_FILE)
    open(path, "w").close()
    os.utime(path, (0, 0))  # long stale
    a, b = output_lock.RunLock(str(tmp_path)), output_lock.RunLock(str(tmp_path))
    judged = b.read()
    assert judged is None and b.is_stale(judged)
    a.acquire()
    try:
        assert not b.remove_stale(judged)
        assert a.still_ours() and json.load(open(path))["token"] == a.token
    finally:
        a.release()
    open(path, "w").close()
    os.utime(path, (0, 0))
    assert b.read() is None and b.remove_stale(None) and not os.path.exists(path)  # the file it judged: removed


def test_a_stale_lock_judged_and_then_replaced_or_touched_is_put_back(tmp_path):
    """rev F3 (audit71): two unreadable lock files have one record, None: a fresh empty lock another start made
    (between its create and its write) after we judged a dead one was removed as the one judged. And a lock touched
    after it was judged stale has a live holder. Both are put back (the file read is compared, not its record)."""
    path = os.path.join(str(tmp_path), output_lock.LOCK_FILE)
    open(path, "w").close()
    os.utime(path, (0, 0))  # long stale: a node that died between create and write
    b = output_lock.RunLock(str(tmp_path))
    judged = b.read()
    assert judged is None and b.is_stale(judged)
    os.remove(path)  # another start took the dead one over, and a third created its own, not written yet
    open(path, "w").close()
    fresh = os.stat(path).st_ino
    assert not b.remove_stale(judged)
    assert os.stat(path).st_ino == fresh and os.listdir(str(tmp_path)) == [output_lock.LOCK_FILE]
    # a record judged stale by its age, then touched by its holder (alive after all: a suspended node resumed)
    write_lock(path, host="node-17", pid=4242, token="alive")
    os.utime(path, (0, 0))
    judged = b.read()
    assert b.is_stale(judged)
    os.utime(path)
    assert not b.remove_stale(judged) and json.load(open(path))["token"] == "alive"


@pytest.mark.slow  # a process of its own, which imports loop
def test_a_lock_is_released_when_its_process_exits_without_release(tmp_path):
    """A process that took the lock and ended (an uncaught error, sys.exit) releases it at exit: the next start finds
    the folder free, not a stale lock to take over (mutant: no atexit release)."""
    out = str(tmp_path / "out")
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); from loop import lock; "
            f"lock.RunLock({out!r}).acquire(); raise SystemExit(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert not os.path.exists(out)  # the lock, and the folder it made


def test_the_lock_variables_are_read_from_the_environment(monkeypatch):
    """LOOP_LOCK_STALE_S (which the refusal names) and LOOP_SLURM_TASKS_WAIT_S are read when loop starts (mutants:
    the defaults always)."""
    import importlib.util

    monkeypatch.setenv("LOOP_LOCK_STALE_S", "45")
    monkeypatch.setenv("LOOP_SLURM_TASKS_WAIT_S", "2.5")
    spec = importlib.util.spec_from_file_location("loop.lock_read_afresh", output_lock.__file__)
    fresh = importlib.util.module_from_spec(spec)  # a copy of the module, read as a starting loop reads it
    spec.loader.exec_module(fresh)
    assert (fresh.LOCK_STALE_S, fresh.SLURM_TASKS_WAIT_S) == (45.0, 2.5)


# ---------------------------------------------------------------- loop/version.py


def version_copy(folder):
    """loop/version.py copied into `folder`/loop and imported from there: a source tree (or an installed copy)."""
    import importlib.util
    import shutil

    from loop import version

    os.makedirs(os.path.join(folder, "loop"), exist_ok=True)
    path = shutil.copy(version.__file__, os.path.join(folder, "loop", "version.py"))
    spec = importlib.util.spec_from_file_location(f"loop_version_copy_{abs(hash(str(folder)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(folder, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", "-C",
                          str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_the_version_is_the_source_trees_own_then_the_installed_ones_then_unknown(tmp_path, monkeypatch):
    """A source tree reads its own pyproject.toml, whatever version another installed copy's metadata says; without
    one the installed metadata; without either "0+unknown" (mutants: the metadata first, so a clone said an older
    install's version; None, which --version and the model card printed as "None"). Only the [project] table's
    version counts (mutant: a version of a later table was taken for it)."""
    import importlib.metadata

    from loop import version

    monkeypatch.setattr(version.importlib.metadata, "version", lambda name: "9.9.9")
    assert version.find_version() == version.source_tree_version(os.path.join(ROOT, "pyproject.toml")) != "9.9.9"
    monkeypatch.setattr(version, "source_tree_version", lambda path: None)
    assert version.find_version() == "9.9.9"

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.importlib.metadata, "version", missing)
    assert version.find_version() == "0+unknown"
    monkeypatch.undo()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "loop"\ndynamic = ["version"]\n\n[tool.other]\nversion = "9"\n')
    assert version.source_tree_version(str(pyproject)) is None
    pyproject.write_text('[build-system]\nrequires = []\n\n[project]\nname = "loop"\nversion = "1.2.3"\n\n[tool.x]\n'
                         'version = "9"\n')
    assert version.source_tree_version(str(pyproject)) == "1.2.3"


def test_a_source_trees_commit_says_whether_its_loop_was_changed(tmp_path, monkeypatch):
    """best/training_args.json records the commit of a clone's loop, "+modified" when loop/ differs from it (not
    files outside loop/, nor untracked ones), and no commit for a copy outside a clone of its own, though inside
    another project's git repository (a virtual environment in a project: mutants: that project's commit recorded;
    "+modified" never said, or said for a changed README)."""
    outer = tmp_path / "project"
    copy = version_copy(outer / "venv" / "site-packages")
    git(outer, "init", "-q")
    git(outer, "add", "-A")
    git(outer, "commit", "-q", "-m", "a project")
    assert copy.source_commit() is None  # not the project's commit

    clone = tmp_path / "clone"
    copy = version_copy(clone)
    (clone / "README.md").write_text("loop\n")
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "loop")
    head = git(clone, "rev-parse", "HEAD")
    assert copy.source_commit() == head
    (clone / "README.md").write_text("changed\n")
    (clone / "loop" / "new.py").write_text("")  # untracked
    assert copy.source_commit() == head
    with open(clone / "loop" / "version.py", "a") as f:
        f.write("\n# changed\n")
    assert copy.source_commit() == head + "+modified"

    monkeypatch.setattr(copy, "LIBRARIES", ("m17_fake_library", "m17_no_such_library"))
    monkeypatch.setitem(sys.modules, "m17_fake_library", SimpleNamespace(__version__="1.0"))
    versions = copy.library_versions()
    assert versions == {"python": versions["python"], "loop": copy.__version__, "loop_commit": head + "+modified",
                        "m17_fake_library": "1.0"}


# ---------------------------------------------------------------- loop/callbacks.py


class LoopLike:
    """What the hooks' checks look at: the loop's class (a variant's methods) and its callbacks."""

    def __init__(self, *callbacks):
        self.callbacks = list(callbacks)


def test_every_trainer_and_lightning_hook_name_the_loop_lacks_is_named(tmp_path):
    """A method named as a hook of transformers' TrainerCallback or of Lightning, on a callback or on a variant of the
    loop, never runs here: each is named in the one warning, sorted (mutants: on_train_begin, Trainer's first hook,
    left out; only the first one named; the variant's own methods not looked at)."""
    from loop.callbacks import unknown_hooks

    class TrainerStyle:
        def on_train_begin(self, args, state, control, **kwargs): ...
        def on_log(self, args, state, control, **kwargs): ...

    class LightningStyle:
        def on_fit_start(self, trainer, module): ...
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx): ...

    class Variant(LoopLike):
        def on_epoch_begin(self): ...

    assert unknown_hooks(Variant(TrainerStyle(), LightningStyle())) == (
        "LightningStyle.on_fit_start, LightningStyle.on_train_batch_end, TrainerStyle.on_log, "
        "TrainerStyle.on_train_begin, Variant.on_epoch_begin are hooks of Trainer or Lightning that the loop does "
        "not have, so nothing calls them (the loop's hooks: on_train_start, on_epoch_start, on_step_end, "
        "on_epoch_end, on_evaluate, on_save, on_train_end).")


def test_each_hook_of_trainers_callback_is_the_loops_or_named():
    """Every on_* method of the installed transformers.TrainerCallback is a hook of the loop or one the warning names
    (audit71 m17 F3: on_predict, a callback's method that never ran, went without a word), and so are Lightning's
    test, predict and sanity-check hooks."""
    import transformers

    from loop.callbacks import FOREIGN_HOOKS, HOOKS

    trainers = {name for name in dir(transformers.TrainerCallback) if name.startswith("on_")}
    assert "on_predict" in trainers and not trainers - FOREIGN_HOOKS - set(HOOKS)

    class LightningTest:  # Lightning's test, predict and sanity-check hooks (rev N2)
        def on_test_epoch_end(self, trainer, module): ...
        def on_sanity_check_start(self, trainer, module): ...
        def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx): ...

    from loop.callbacks import unknown_hooks
    assert unknown_hooks(LoopLike(LightningTest())).startswith(
        "LightningTest.on_predict_batch_end, LightningTest.on_sanity_check_start, LightningTest.on_test_epoch_end are "
        "hooks of Trainer or Lightning")

    class Ported(transformers.TrainerCallback):  # (rev2 N1) only the hooks it wrote, not the base class's no-ops
        def on_step_end(self, loop): ...
        def on_log(self, args, state, control, logs=None, **kwargs): ...

    assert unknown_hooks(LoopLike(Ported())).startswith("Ported.on_log is a hook of Trainer or Lightning")
    ported = Ported()
    ported.on_step_begin = lambda *args: None  # (rev3 N3) set on the object: named too
    assert unknown_hooks(LoopLike(ported)).startswith("Ported.on_log, Ported.on_step_begin are hooks of")
    # (rev3 F1) a library's own callback wrote its hooks: named, and refused at the start in one line
    assert "EarlyStoppingCallback.on_train_begin" in unknown_hooks(LoopLike(transformers.EarlyStoppingCallback()))
    from loop.callbacks import check_hook_signatures
    from loop.errors import UserError
    for callback, end in ((Ported(), r"\.$"), (transformers.EarlyStoppingCallback(), r" \(--early_stopping_patience")):
        with pytest.raises(UserError, match=rf"^{type(callback).__name__} is a transformers TrainerCallback, whose "
                                            r"hooks take Trainer's \(args, state, control\); the loop calls a "
                                            r"callback's hooks as hook\(loop\): write it as a loop.callbacks.Callback"
                                            + end):
            check_hook_signatures(LoopLike(callback))

    from loop.callbacks import Callback

    class Dual(Callback, transformers.TrainerCallback):  # (rev4 F3) written for both: each loop hook its own
        def on_step_end(self, *args, **kwargs): ...
        def on_epoch_end(self, *args, **kwargs): ...
        def on_evaluate(self, *args, **kwargs): ...
        def on_save(self, *args, **kwargs): ...
        def on_train_end(self, *args, **kwargs): ...

    check_hook_signatures(LoopLike(Dual()))

    class Odd:  # (rev3 N2) a class whose __module__ is no string
        def on_log(self): ...
    Odd.__module__ = None
    assert unknown_hooks(LoopLike(Odd())).startswith("Odd.on_log is a hook")


def test_a_hooks_signature_is_checked_as_the_loop_calls_it(tmp_path):
    """A variant's own hooks take no loop argument (on_evaluate(self, metrics)), a callback's take the loop first; the
    loop passes metrics= and path= by name, so a hook that calls them otherwise fails at the first evaluation or save
    and is refused at the start (mutants: a variant's right hook refused, as if it were a callback's; a parameter
    named otherwise let through; a builtin without a known signature a crash)."""
    from loop.callbacks import Callback, check_hook_signatures

    class Variant(LoopLike):
        def on_evaluate(self, metrics): ...
        def on_save(self, path): ...
        def on_train_end(self): ...

    class Right(Callback):
        def on_evaluate(self, loop, metrics): ...
        def on_save(self, loop, path, **kwargs): ...

    class Builtin(Callback):
        on_step_end = staticmethod(max)  # (a callable whose signature is not known: let through, as it is)

    check_hook_signatures(Variant(Right(), Builtin()))  # nothing to say

    class Renamed(Callback):
        def on_evaluate(self, loop, scores): ...

    with pytest.raises(UserError) as e:
        check_hook_signatures(LoopLike(Renamed()))
    assert str(e.value) == ("Renamed.on_evaluate(loop, scores) cannot take what the loop passes it; define it as "
                            "on_evaluate(self, loop, metrics).")
