"""The output_dir lock: one run per --output_dir.

Two runs writing into one folder would interleave their metrics.jsonl, overwrite each other's checkpoints and
leave best/ holding whichever model came last. So the main process holds `output_dir/.loop.lock` (host, pid,
start time, a token) for the run's lifetime. It is created with O_CREAT|O_EXCL, which is atomic on local and
network filesystems, so nodes sharing the folder see it too (flock alone does not work across NFS nodes).
A lock left by a dead process on this host (or one whose pid another process has now) is stale and taken
over; one held on another host is refused with its owner named (delete the file if that run is gone), or,
for a resume, waited for until its node is known dead (nobody touched it for LOCK_STALE_S).
The tasks of a SLURM step that no launcher joined (srun -n 2 python loop/train.py) are copies of one command: one
that finds the lock held by another task of its step is refused and leaves a mark beside the lock, which stops the
holder too (RunLock.check_step_alone), so that none trains alone into the folder.

The Checkpointer (checkpoint.py) takes it before any work and checks it before every write.
"""

import atexit
import contextlib
import datetime
import json
import os
import secrets
import socket
import sys
import threading
import time

from . import distributed
from .errors import UserError, short
from .logs import say
from .storage import make_folders

LOCK_FILE = ".loop.lock"
# The lock holder touches the lock file this often; a lock from another host that nobody touched for
# LOCK_STALE_S is stale (that node died: a requeued job on another node then starts without help).
LOCK_HEARTBEAT_S = 30
LOCK_STALE_S = float(os.environ.get("LOOP_LOCK_STALE_S", 600))
# srun starts the tasks of a step together: a task of one no launcher joined waits this long after taking the lock,
# before it writes, for another task of its step to come to the same --output_dir (RunLock.check_step_alone)
SLURM_TASKS_WAIT_S = float(os.environ.get("LOOP_SLURM_TASKS_WAIT_S", 10))


def machine_ids():
    """(boot id, pid namespace) of this process, or None each where the system does not say (not Linux)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = None
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return boot, pidns


def process_start(pid):
    """(state, start time in clock ticks after boot) of process `pid`, from /proc/PID/stat; None where the system
    does not say (not Linux, no such process). A pid's start time tells two processes that had it apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": the name may hold spaces and ")"
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


def started_after(ticks, when):
    """Whether a process started `ticks` after boot began later than the time `when` (a lock's "started") plus a
    minute (the clock may be set meanwhile); False where either is unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        try:
            then = datetime.datetime.strptime(when, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:  # a lock of a loop that wrote no UTC offset: local time
            then = time.mktime(time.strptime(when, "%Y-%m-%dT%H:%M:%S"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") > then + 60
    except (OSError, ValueError, TypeError, StopIteration):
        return False


def file_id(stat):
    """Which file a stat is of: its device and inode, and its time, which the heartbeat sets (a purged folder's next
    lock file may be given the same inode number)."""
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns


_this_thread = threading.local()  # .run: the fit()/validate() this thread is inside, {"active": bool}


@contextlib.contextmanager
def run_going():
    """fit()'s and validate()'s time (preemption.way_out): a lock taken meanwhile belongs to a run that goes on
    until it ends (RunLock.running_here), not to one left behind by code that drove a Loop by its parts."""
    run, before = {"active": True}, getattr(_this_thread, "run", None)
    _this_thread.run = run
    try:
        yield
    finally:
        run["active"] = False
        _this_thread.run = before


def _current_run():
    return getattr(_this_thread, "run", None)


def lock_token(output_dir):
    """The token of the run whose lock `output_dir` holds (RunLock.token), None when there is none to read: how
    every process of a run checks it sees the lock its main process took (Checkpointer.check_shared_output_dir)."""
    try:
        with open(os.path.join(output_dir, LOCK_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record.get("token") if isinstance(record, dict) else None


class RunLock:
    """`output_dir/.loop.lock`: one run per output_dir, on a local or a shared filesystem.

    Created with O_CREAT|O_EXCL (atomic, NFS included) and holding {"host", "pid", "started", "boot",
    "pidns", "pstart", "token"}; a daemon thread touches it every LOCK_HEARTBEAT_S. Stale when it names this
    machine (host, boot and pid namespace: containers sharing a host name have pid namespaces of their own, where
    another's live pid looks dead or like ours) and a process that no longer runs (a `kill -9`) or that is another
    one with its pid (started at another time: a requeue onto the same node), or when it was not touched for
    LOCK_STALE_S (that node died). Otherwise it is refused with its owner named
    (a resume first waits for a lock another machine stopped touching: a requeue after a node failure);
    delete the file if that run is gone. A stale lock is taken over by renaming it aside, so two starts
    racing over it cannot both win; the heartbeat and release() touch only a lock holding our token.
    """

    _held_here = {}  # lock files this process took and has not released (real path: its RunLock)

    def __init__(self, output_dir, slurm=None):
        self.dir = output_dir
        # one task of a SLURM step of several that no launcher joined (distributed.unjoined_slurm_task): recorded in
        # the lock, where another task of the same step finds it (srun -n 2 python loop/train.py into one folder)
        self.slurm = slurm
        self.acquired_at = None
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.boot, self.pidns = machine_ids()
        self.pstart = (process_start(self.pid) or (None, None))[1]  # which process had this pid: is_stale
        self.token = secrets.token_hex(8)
        self.held = False
        self.read_id = None  # which file read() read last (file_id)
        self.file_id = None  # which file this run made (file_id), once acquired: same_file, still_ours
        self.real_path = None  # key(), fixed when the lock is taken
        self.run = None  # the fit()/validate() that took it (running_here), None for a Loop driven by its parts
        self.lost = None  # the record of a run that took our lock over (we were suspended past LOCK_STALE_S)
        self.created_dirs = []  # the folders acquire() made: --output_dir and each missing parent, deepest first
        # the lock of a run that never finished (a dead process or node), taken over by acquire(): its
        # holder record, or {} when unreadable; None when the folder was free
        self.took_over = None

    def acquire(self, wait=False, no_wait=None):
        """Take the lock, or raise UserError naming its holder. `wait` (a resume): a lock of another machine
        that is not yet stale is waited for while nobody touches it (its node died: a requeued job then
        starts by itself), and refused as soon as its holder touches it (that run is alive)."""
        if not os.path.isdir(self.dir):
            try:
                try:
                    self.created_dirs = make_folders(self.dir)
                except FileNotFoundError:  # a parent removed meanwhile by a failed start beside us (release)
                    self.created_dirs = make_folders(self.dir)
            except OSError as e:
                if os.path.islink(self.dir):  # a link whose target is gone (a purged scratch folder): "File exists"
                    raise UserError(f"--output_dir '{self.dir}' is a symbolic link to '{os.readlink(self.dir)}', which "
                                    f"does not exist; create that folder, or remove the link.") from e
                if not os.path.isdir(self.dir):  # (made meanwhile by another start: the lock decides between us)
                    raise UserError(f"--output_dir '{self.dir}' cannot be created ({short(e)}); choose a writable "
                                    f"folder.") from e
        me = {"host": self.host, "pid": self.pid, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "boot": self.boot, "pidns": self.pidns, "pstart": self.pstart, "token": self.token, "argv": sys.argv}
        if self.slurm:
            me.update(slurm_step=self.slurm["step"], slurm_task=self.slurm["task"])
        waited = False
        for _ in range(4):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.read()
                running = self.running_here(holder)
                if running is not None:  # (else our own pid is an earlier run's that left it: stale, taken over)
                    raise UserError(f"--output_dir '{self.dir}' is in use by another run of this process (thread "
                                    f"'{running.thread.name}', since {running.started}); wait for it to finish, or "
                                    f"use another --output_dir.")
                if self.slurm and holder and holder.get("slurm_step") == self.slurm["step"] \
                        and holder.get("slurm_task") != self.slurm["task"] \
                        and not (self.is_stale(holder) and holder.get("pid") != self.pid):  # (a dead task's: requeued)
                    # another task of our own step holds it: copies of one command, not runs of their own; the
                    # mark tells that task to stop too (check_step_alone), so that every task ends with this line
                    self.mark_step_copy(holder)
                    raise UserError(distributed.slurm_tasks_message(self.slurm["tasks"]))
                if wait and not waited and not self.is_stale(holder) and not self.same_machine(holder):
                    self.wait_for_stale(holder)  # until stale, touched (alive) or deleted
                    waited = True
                    continue  # judge the lock afresh: gone (take it), stale (take it over) or touched (refused)
                if self.is_stale(holder):
                    if not self.remove_stale(holder):
                        continue  # another start took it over first: judge its lock afresh
                    # our own pid with the lock still held here: an earlier fit() of this process that raised
                    # (an errored run, whose lock goes at exit), not a dead run
                    if not (holder and holder.get("host") == self.host and holder.get("pid") == self.pid
                            and self.key() in RunLock._held_here):
                        self.took_over = dict(holder or {})
                    continue
                # when it was touched, not "alive": a holder touches it every LOCK_HEARTBEAT_S, so a lock untouched
                # for minutes is most likely a dead node's, which the age rule takes over
                touched = f"last touched {self.age():.0f} s ago"
                if holder and self.same_machine(holder):
                    touched += " by a process that still runs on this machine"
                elif waited:
                    touched += ": touched again while this start waited, so that run is alive"
                else:
                    touched += (f"; a lock untouched for {LOCK_STALE_S:.0f} s (LOOP_LOCK_STALE_S) is taken over by "
                                f"itself" + ("" if no_wait else ", which a resume (--resume_from_checkpoint) waits for"))
                who = (f"process {holder.get('pid')} on host '{holder.get('host')}' since {holder.get('started')} "
                       f"({touched})" if holder else f"another run (an unreadable lock file, {touched})")
                why = f" ({no_wait})" if no_wait and holder and not self.same_machine(holder) else ""
                raise UserError(f"--output_dir '{self.dir}' is in use by {who}{why}; wait for it to finish, use another "
                                f"--output_dir, or delete '{self.path}' if that run is gone.")
            except OSError as e:
                raise UserError(f"--output_dir '{self.dir}' is not writable ({short(e)}); fix its permissions or "
                                f"choose another folder.") from e
            # before the record is written: another thread of ours may read it (or its empty file) meanwhile
            self.thread, self.started, self.run = threading.current_thread(), me["started"], _current_run()
            self.real_path = os.path.realpath(self.path)
            RunLock._held_here[self.real_path] = self
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
                    f.flush()
                    os.fsync(f.fileno())
                    self.file_id = file_id(os.fstat(f.fileno()))  # lock_held: the same file still, a stat per line
            except BaseException as e:  # (a Ctrl-C in a slow fsync too: no entry left to refuse later runs by)
                self.forget()
                os.remove(self.path)
                if isinstance(e, OSError):
                    raise UserError(f"could not write '{self.path}' ({short(e)}); free space in --output_dir.") from e
                raise
            self.held = True
            self.acquired_at = time.monotonic()
            atexit.register(self.release)  # any exit of the process, error or preemption included
            self._released = threading.Event()  # wakes the heartbeat to end with the lock (not up to its period later)
            threading.Thread(target=self._heartbeat, args=(self._released,), name="loop-lock-heartbeat",
                             daemon=True).start()
            return
        raise UserError(f"could not take the lock '{self.path}' (it keeps reappearing); another run is starting "
                        f"in --output_dir '{self.dir}'.")

    def step_mark(self, step=None):
        """The file another task of a SLURM step (ours, or `step`) leaves beside the lock when it finds the lock held
        by a task of that step. It is for that holder only: removed when the holder stops (check_step_alone,
        release) or dies (remove_stale, when the lock is taken over), so a later run never finds one."""
        return f"{self.path}.slurm-{step or self.slurm['step']}"

    def mark_step_copy(self, holder):
        """Tell `holder`, another task of our step, that we came to its folder too: it stops as we do."""
        mark = self.step_mark()
        try:
            with open(mark, "a", encoding="utf-8") as f:
                f.write(f"{self.slurm['task']}\n")
        except OSError:
            return  # (the holder stopped meanwhile and its folder went: nothing left to tell)
        now = self.read()
        if now is not None and now.get("token") != holder.get("token"):  # it released the lock while we wrote: the
            self.remove_mark(mark)  # mark would stop the next run of our step instead (release removes the lock first)

    def remove_mark(self, mark):
        try:
            os.remove(mark)
        except OSError:
            pass  # (none, or already removed)

    def copy_came(self):
        """Whether another task of our SLURM step left its mark beside our lock: one stat, for a task of a step no
        launcher joined only (checked before every metrics line: Checkpointer.lock_held)."""
        return bool(self.slurm) and self.held and os.path.exists(self.step_mark())

    def check_step_alone(self, wait=False):
        """A lock taken by one task of a SLURM step no launcher joined (self.slurm): refuse, as that task was, when
        another task of the step found it (its mark beside the lock). `wait`: first until SLURM_TASKS_WAIT_S after
        taking the lock, since srun starts the tasks of a step together: one that got here later than this one
        has found our lock by then (not in the shell of srun --pty, whose other tasks ended at once). A per-task
        sweep, each task with its own --output_dir, finds no mark."""
        if not self.slurm or not self.held:
            return
        if wait and not self.slurm.get("pty"):
            while not self.copy_came() and time.monotonic() < self.acquired_at + SLURM_TASKS_WAIT_S:
                time.sleep(0.2)
        if self.copy_came():
            self.remove_mark(self.step_mark())  # (the folder is left as it was found)
            raise UserError(distributed.slurm_tasks_message(self.slurm["tasks"]))

    def remove_stale(self, holder):
        """Move the stale lock `holder` aside and delete it; False when the file there was no longer that one (a
        start racing us removed it and took the lock: removing theirs would let two runs hold it)."""
        grave = f"{self.path}.stale-{self.token}"
        try:
            os.rename(self.path, grave)  # atomic: of two starts racing here, one gets the file
        except FileNotFoundError:
            return False
        moved_id = None
        try:
            moved_id = file_id(os.stat(grave))
            with open(grave, encoding="utf-8") as f:
                moved = json.load(f)
        except (OSError, ValueError):
            moved = None
        # not the lock we judged (another start's, made meanwhile: two unreadable files have one record, None), or
        # touched since (its holder lives): put it back where it was
        if moved != holder or self.read_id not in (None, moved_id):
            try:
                os.link(grave, self.path)  # (fails if yet another lock appeared meanwhile: that one stands)
            except OSError:
                pass
            os.remove(grave)
            return False
        os.remove(grave)
        if holder and holder.get("slurm_step"):  # a mark another task of its step left for the dead holder (a
            self.remove_mark(self.step_mark(holder["slurm_step"]))  # requeued step): not for the next one
        return True

    def wait_for_stale(self, holder):
        """Wait while another machine's lock goes untouched, until it is stale; its holder touching it
        (alive) ends the wait, and acquire() refuses it."""
        touched = self.mtime()
        who = f"process {holder.get('pid')} on host '{holder.get('host')}'" if holder else "an unreadable lock"
        say(f"--output_dir '{self.dir}' is locked by {who}, untouched for {self.age():.0f} s: waiting until it is "
            f"{LOCK_STALE_S:.0f} s old (its node died) or touched again (that run is alive); delete '{self.path}' "
            f"to start at once")
        while self.age() <= LOCK_STALE_S and self.mtime() == touched and os.path.exists(self.path):
            time.sleep(min(5.0, LOCK_HEARTBEAT_S / 6))

    def mtime(self):
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None

    def read(self):
        """The lock's record; None when unreadable. `read_id` is which file was read (remove_stale: still it?)."""
        self.read_id = None
        try:
            return self._read_once()
        except FileNotFoundError:
            return {"host": self.host, "pid": -1}  # removed meanwhile: stale, retry
        except (OSError, ValueError):
            # a holder between its O_EXCL create and its write; give it a moment
            time.sleep(0.2)
            try:
                return self._read_once()
            except FileNotFoundError:
                self.read_id = None  # (the first try's file is gone)
                return {"host": self.host, "pid": -1}
            except (OSError, ValueError):
                return None

    def _read_once(self):
        with open(self.path, encoding="utf-8") as f:
            self.read_id = file_id(os.fstat(f.fileno()))
            return json.load(f)

    def _heartbeat(self, released):
        while self.held and not released.wait(LOCK_HEARTBEAT_S):
            if self.held:
                self.still_ours(touch=True)

    def still_ours(self, touch=False):
        """Whether the lock file still holds our token; when another run took it over (this one was suspended
        past LOCK_STALE_S, SIGSTOP), `lost` records who, and this run must not touch it or write on. `touch` (the
        heartbeat): a file holding our token is touched and its new time recorded through the file read, not its
        path again (a lock replaced meanwhile would be taken for ours: same_file() then passes it)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.load(f)
                if not isinstance(record, dict):
                    raise ValueError("no lock record")
                if touch and record.get("token") == self.token:
                    os.utime(f.fileno() if os.utime in os.supports_fd else self.path)
                    self.file_id = file_id(os.fstat(f.fileno()))  # its new time: same_file() stays one stat
        except FileNotFoundError:  # removed (the folder deleted or purged): another run may start there now
            self.lost = {"removed": True}
            return False
        except (OSError, ValueError):  # unreadable (a busy filesystem, its mode changed, a tool emptied it)
            return self.unread_still_ours(touch)
        if record.get("token") == self.token:
            if self.lost == {"replaced": True}:  # a guess (unreadable at another inode) our token now disproves: a
                self.lost = None  # filesystem that renumbered our file while it reconnected
            return True
        self.lost = record
        return False

    def unread_still_ours(self, touch):
        """Whether a lock file this run cannot read is still the one it made (its device and inode): an unreadable
        lock at another inode is another run's (between its create and its write, or another user's), and ours went.
        `touch` (the heartbeat): ours is touched by its path, not recorded (same_file() then reads it), so that the
        next start does not take a live run's lock over as stale."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self.lost = {"removed": True}
            return False
        except OSError:
            return True  # unreachable for a moment: no sign of another run
        if self.file_id is not None and (stat.st_dev, stat.st_ino) != self.file_id[:2]:
            time.sleep(0.2)  # another start between its create and its write: its record then names it (or a
            try:  # filesystem that numbered our file anew for a moment: our token)
                record = self._read_once()
            except FileNotFoundError:
                record = {"removed": True}
            except (OSError, ValueError):
                record = {"replaced": True}  # another user's lock, or a run that died before writing it
            if isinstance(record, dict) and record.get("token") == self.token:
                return True
            self.lost = record if isinstance(record, dict) else {"replaced": True}
            return False
        if touch:
            try:
                os.utime(self.path)
            except OSError:
                pass  # a full or briefly unreachable filesystem: the next heartbeat tries again
        return True

    def same_file(self):
        """Whether the lock path is still the file this run created (one stat: no read)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return self.file_id is None or file_id(stat) == self.file_id

    def check_still_held(self):
        """Raise UserError when another run took this run's lock over: it writes into the same folder; or when
        another task of our SLURM step came to it late (check_step_alone)."""
        self.check_step_alone()
        if self.held and (self.lost is None or self.lost.get("replaced")):
            self.still_ours()
        if self.lost is not None and self.lost.get("removed"):
            raise UserError(f"the lock file '{self.path}' was removed while this run held it (--output_dir deleted or "
                            f"purged?); stopping before writing into a folder another run may now use.")
        if self.lost is not None and self.lost.get("replaced"):
            raise UserError(f"the lock file '{self.path}' was replaced, while this run held it, by one this run cannot "
                            f"read (another run's or another user's); stopping before writing into a folder another "
                            f"run now uses.")
        if self.lost is not None:
            who = f"process {self.lost.get('pid')} on host '{self.lost.get('host')}'"
            raise UserError(f"another run ({who}) took over the lock of --output_dir '{self.dir}' while this one "
                            f"was not touching it (suspended for more than {LOCK_STALE_S:.0f} s?); stopping before "
                            f"writing into the folder it now uses.")

    def age(self):
        try:
            return time.time() - os.stat(self.path).st_mtime
        except OSError:
            return 0.0

    def key(self):
        """The lock file's real path, as it was when taken: one folder reached by two paths (a link), or by a
        relative one after a chdir, is one entry of _held_here."""
        return self.real_path or os.path.realpath(self.path)

    def forget(self):
        if RunLock._held_here.get(self.key()) is self:  # (not the run that took it over)
            del RunLock._held_here[self.key()]

    def running_here(self, holder):
        """The RunLock of this process whose `holder` record (None: its file is being written) is another run still
        going (two fit() at once in threads, a threaded sweep into one folder: both would write into one folder; a
        run started inside a run's callback), else None. A lock with our own pid is otherwise an earlier run's that
        did not release it: one that raised before its release, a Loop a notebook drove by its parts and left,
        whatever its thread does now."""
        other = RunLock._held_here.get(self.key())
        if other is None or (holder is not None and holder.get("token") != other.token):
            return None
        if other.run is not None and other.run["active"] and other.run is not _current_run():
            return other  # (a run of its own inside this one too: --eval_only from a callback of its fit())
        return None

    def is_stale(self, holder):
        """A lock nobody touched for LOCK_STALE_S is stale wherever it comes from (a live holder
        touches it every 30 s): a dead node's, an unreadable one, or one whose pid now belongs to
        another process (a reboot, a container's pid namespace). Sooner, on this host, when its
        process is gone or its pid is another process's (reused_pid)."""
        if self.age() > LOCK_STALE_S:
            return True
        if not holder:
            return False
        if not self.same_machine(holder):  # we cannot see its processes: wait for the age rule
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        if pid == self.pid:  # left by an earlier run of this process, unless that run goes on (running_here)
            return self.running_here(holder) is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        return self.reused_pid(holder, pid)

    def reused_pid(self, holder, pid):
        """Whether live process `pid` of this machine is not the one that wrote `holder`: a run killed with -9 and
        requeued onto the same node may find its pid taken by another process (its lock was refused: exit 2, and
        the requeue stopped). Another process is one that started at another time than the lock records (its
        "pstart": exact); for a lock without one (a loop before 2026-12-04), one that started after the lock's
        "started" when the lock went untouched for 3 heartbeats (a live holder misses none). A zombie (killed, not
        yet reaped) holds no lock."""
        now = process_start(pid)
        if now is None:
            return False  # no /proc: alive, as far as we can tell
        state, ticks = now
        if state == "Z":
            return True
        if isinstance(holder.get("pstart"), int):
            return ticks != holder["pstart"]
        return self.age() > 3 * LOCK_HEARTBEAT_S and started_after(ticks, holder.get("started"))

    def same_machine(self, holder):
        """Whether `holder` ran where our process ids mean what its pid means: this host, and (when the lock
        says) this boot and pid namespace. A lock written before these were recorded: the host alone."""
        if not holder or holder.get("host") != self.host:
            return False
        return all(holder.get(k) is None or mine is None or holder.get(k) == mine
                   for k, mine in (("boot", self.boot), ("pidns", self.pidns)))

    def release(self):
        atexit.unregister(self.release)  # (a notebook's runs would add one each)
        if self.held:
            self.held = False
            self._released.set()
            if self.still_ours():  # another run's lock (it took ours over) stays
                try:
                    os.remove(self.path)
                except OSError:  # gone already, or the filesystem turned read-only: a stale lock, taken over later
                    pass
                if self.slurm:  # a mark another task of our step left after our last look (check_step_alone); after
                    self.remove_mark(self.step_mark())  # the lock: one written later is removed by its writer
            self.forget()  # after the file: a start meanwhile in another thread takes it over as ours, not a dead run's
        made, self.created_dirs = self.created_dirs, []
        for folder in made:  # a failed start leaves no trace of the folders it made (review r R4: nor their parents)
            try:
                os.rmdir(folder)
            except OSError:
                break  # not empty: the run wrote something
