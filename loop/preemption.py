"""Preemption: stop signals, the repeated-signal rule, and every rank agreeing to stop together.

Owns: the SIGTERM/SIGINT/SIGUSR1 handlers (and what they do in the workers forked under them), the
"same signal again within SIGNAL_ECHO_S is an echo" rule, the per-step agreement across ranks (a CPU
gloo side group, so asking "stop?" every step never syncs the GPU), a stop's end of the run (`preempt`: a
checkpoint, then `errors.Preempted`, which the CLI turns into exit code 75), and every way out of `Loop.fit()`
and `validate()` (`way_out`: what the run changed of the process put back, on a stop or an error too). Does not
own: writing the checkpoint (`checkpoint.py`) or when the loop asks (`Loop.stop_signalled`, each optimizer step).

The handler only records the signal; the step in flight finishes, and nothing is written from
inside a signal handler.
"""

import contextlib
import os
import signal
import sys
import threading
import time
import warnings

import torch

from . import errors

# SIGHUP too: a dropped ssh session would otherwise kill the run without a checkpoint.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
# A launcher forwards the signal it got to its workers, and SLURM or a terminal signals the whole
# process group: one preemption can reach a worker two or three times within milliseconds. Only a
# repeat after this many seconds means "exit now".
SIGNAL_ECHO_S = 2.0


def ignore_stop_signals(worker_id=None):
    """This process ignores the stop signals. A DataLoader worker (as its worker_init_fn): SLURM, a terminal
    or a launcher signals every process of the job, and a worker killed by SIGTERM would crash its rank
    ("DataLoader worker is killed by signal") before the rank could save its checkpoint; the rank stops its
    workers itself. A preempted process as it exits (errors.run_cli)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # a worker starts with them held (stop_signals_held): one that came
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # meanwhile is dropped now, being ignored


ignore_stop_signals_in_worker = ignore_stop_signals  # the DataLoader's worker_init_fn


@contextlib.contextmanager
def stop_signals_held():
    """Stop signals wait (blocked) in this thread while the block runs, then arrive. Around the start of a
    DataLoader worker (loaders.worker_context): the worker inherits the block, and torch's worker loop sets its own
    SIGTERM handler (death, unless the parent sent it) before it calls the worker_init_fn that ignores them; a
    SIGTERM to the whole job in that window (SLURM's, torchrun's killpg), up to 100 ms on a loaded machine,
    killed the worker and crashed the rank with no checkpoint (chaos F1)."""
    if not hasattr(signal, "pthread_sigmask"):  # (Windows)
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def stop_with_launcher():
    """Two launchers can end without passing a stop on, leaving training running without a parent, to train to
    its end with no checkpoint at the stop: accelerate launch's one-process launcher (a SIGUSR1 ends it at once;
    before accelerate 1.16 a SIGTERM did too), and a torch elastic agent that does not handle SIGTERM (launch.sh
    leaves the stop signals to the ranks), which dies of it. On Linux, ask for a SIGTERM when such a launcher
    exits (prctl PR_SET_PDEATHSIG), so a stop sent to it saves a checkpoint as one sent to training does (SLURM
    signals both: the second is an echo of the first). Only under those: a run started from a shell (`nohup
    python loop/train.py ... &`) must outlive the shell, and an agent that handles SIGTERM passes it on."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    if not _launcher_drops_stops(parent):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        done = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return
    if done and os.getppid() != parent:  # the launcher was gone before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _launcher_drops_stops(parent):
    """Whether process `parent`, ours, is a launcher that can end without passing a stop signal on (above)."""
    elastic = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")  # what a torch elastic agent handles (torch 2.9+)
    if elastic is not None and "TORCHELASTIC_RUN_ID" in os.environ:
        return "SIGTERM" not in [name.strip() for name in elastic.split(",")]
    if os.environ.get("WORLD_SIZE", "1") != "1":
        return False
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(b"accelerate" in a for a in argv) and any(a == b"launch" or a.endswith(b".launch") for a in argv)


def _say(line):
    """`line` on stderr from a signal handler (one write, no buffer): stderr may be a pipe whose reader is gone (a
    launcher that piped it, killed by the same signal), and a broken pipe must not stop the handler."""
    try:
        os.write(2, f"{line}\n".encode())
    except OSError:
        pass


def kill_children():
    """SIGKILL this process's multiprocessing children (datasets' map workers and their Manager, DataLoader
    workers), before it exits at once: its exit does not end them, and a map worker would go on tokenizing
    its shard for minutes, writing temporary files into the datasets cache. Only the modules' own records:
    other children (a tracker's service process) see the exit themselves and finish their work. SIGKILL:
    the workers carry on through a stop signal (they ignore it, or take it as the first)."""
    for name in ("multiprocess", "multiprocessing"):  # datasets' pools, torch's (not imported here: in a handler)
        module = sys.modules.get(name)
        try:
            children = module.active_children() if module else []
        except Exception:  # a record changed while we read it: the others still go
            children = []
        for child in children:
            if getattr(child, "_parent_pid", os.getpid()) != os.getpid():
                continue  # a record inherited through a bare os.fork (tests/zygote.py): another process's child
            try:
                child.kill()
            except Exception:  # gone meanwhile
                pass


class StopSignals:
    """Stop-signal state of one process, and its agreement with the other ranks.

        signals = StopSignals()
        previous = signals.install()       # in fit(), around the epochs
        ...
        if signals.agree(accelerator, step, logging_steps):   # every rank, every optimizer step
            ...checkpoint, raise Preempted
        signals.restore(previous)
    """

    def __init__(self):
        self.signum = None  # the first stop signal taken, or None
        self.time = None  # when it came (time.monotonic)
        self.pid = None  # the process that installed the handlers (its forked workers inherit them)
        self._group = None  # how ranks agree: False (one process), "device", or a process group
        self.kept = None  # the handlers restore() did not put back (a stop under the command line), or None

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum else "another rank"

    def install(self):
        """Install the handlers; returns the previous ones for `restore`. Under launch.sh (LOOP_PID_DIR)
        this process also writes its pid there: torch elastic starts each rank in a session of its own,
        and launch.sh signals exactly the processes that listed themselves (not the launcher, which
        would SIGKILL them 30 s later, nor DataLoader workers)."""
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("fit() is not running in the main thread: stop signals will not save a checkpoint.",
                          stacklevel=3)
            return {}
        self.pid = os.getpid()  # before the handlers: a signal right after them must see it
        # a SIGHUP ignored from the start stays ignored: `nohup` started the run to outlive its terminal
        taken = [sig for sig in STOP_SIGNALS if not (sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN)]
        previous = {sig: signal.signal(sig, self._handle) for sig in taken}
        stop_with_launcher()
        pid_dir = os.environ.get("LOOP_PID_DIR")
        if pid_dir:
            try:
                open(os.path.join(pid_dir, str(os.getpid())), "w").close()
            except OSError:  # launch.sh then falls back to signalling the launcher's process group
                pass
        return previous

    def restore(self, previous):
        """Put the previous handlers back, unless a stop signal was taken under the command line.

        There, after a stop signal the process is on its way out with exit code 75; the launcher's or
        the scheduler's repeats of that signal may still arrive (within SIGNAL_ECHO_S), and the
        default handler would turn them into a kill (exit 143) after the checkpoint was saved.
        So our handler stays: echoes are ignored, a real second signal still exits at once.
        In-process (errors.exit_follows_stop False) the process goes on, and its next Ctrl-C is its own again.
        """
        if self.signum is not None and errors.exit_follows_stop:
            self.kept = previous  # (loop.main() in a notebook goes on after its SystemExit: see _handle)
            return
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    def _handle(self, signum, frame):
        now = time.monotonic()
        if os.getpid() != self.pid:
            return self._handle_in_worker(signum, now)
        if self.kept is not None and not errors.exit_follows_stop and now - self.time > SIGNAL_ECHO_S:
            # the command line's run ended with a stop, and the process went on (loop.main() in a notebook caught
            # its SystemExit): past the stop's echoes the signal is the process's own again, and so are the next
            previous, self.kept = self.kept, None
            self.restore(previous)
            signal.raise_signal(signum)
            return
        if self.signum is None:
            self.signum, self.time = signum, now
            if os.environ.get("RANK", "0") in ("0", ""):  # once per job, not once per process
                _say(f"[loop] {signal.Signals(signum).name}: finishing the current step (or evaluation, or setup), "
                     f"then saving a checkpoint (send it again to exit at once)")
        elif now - self.time > SIGNAL_ECHO_S:
            if not errors.exit_follows_stop:  # in-process: stop fit() where it is, as a Ctrl-C stops any other code
                # (the process's own children, a notebook's workers, stay: the interrupted pool ends its workers)
                raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without a checkpoint")
            _say(f"[loop] second {signal.Signals(signum).name}: exiting without a checkpoint")
            kill_children()  # else the datasets map workers of a setup go on tokenizing, orphaned, for minutes
            os._exit(128 + signum)

    def _handle_in_worker(self, signum, now):
        """The handler as inherited by a process forked from the installing one: the datasets map workers (and
        their Manager) while setup tokenizes, which SLURM, a terminal or `timeout` signal along with it. The
        installing process speaks for the job: it alone prints, and it finishes setup, which needs every
        worker's shard, so a worker carries on through a first signal (and its echoes), silently. A real repeat
        exits at once, as the installing process does (which kills its workers then anyway); so does any
        signal once the installing process is gone (or to a worker's own fork): an orphan's work has nobody to
        go to. An exit mid-write leaves the datasets cache whole: a worker writes its cache file under a
        temporary name and renames it when complete."""
        if os.getppid() != self.pid:
            os._exit(128 + signum)
        if self.signum is None:  # (the state as forked: a signal the installing process took before is the first)
            self.signum, self.time = signum, now
        elif now - self.time > SIGNAL_ECHO_S:
            os._exit(128 + signum)

    # ------------------------------------------------------------ agreement across ranks
    def connect(self, accelerator):
        """Choose how ranks agree; call once on every rank after the accelerator exists."""
        import torch.distributed as dist

        from accelerate.utils import DistributedType

        if accelerator.num_processes == 1:
            self._group = False  # single process: no agreement needed
        elif accelerator.distributed_type == DistributedType.XLA or not dist.is_initialized():
            self._group = "device"  # through the accelerator's collectives
        elif dist.get_backend() == "gloo":
            self._group = None  # the default group is already on the CPU
        else:
            try:
                self._group = dist.new_group(backend="gloo")
            except Exception:  # a backend without a gloo side channel: agree through the device instead
                self._group = "device"

    def agree(self, accelerator, step, logging_steps):
        """True on every rank if any rank got a stop signal; all ranks must call it at the same step."""
        if self._group is False:
            return self.signum is not None
        flag = 1 if self.signum is not None else 0
        if self._group == "device":
            # a device collective syncs the host: only on logging steps, which sync anyway
            if step % logging_steps:
                return False
            t = torch.tensor([flag], device=accelerator.device)
            return bool(accelerator.reduce(t, reduction="sum").item())
        import torch.distributed as dist

        t = torch.tensor([flag])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._group)
        return bool(t.item())


def agree_reason(accelerator, reason):
    """The stop every process takes: the first process's reason to stop, if any has one (Loop.request_stop
    from a per-process condition, a time budget or a file on one node's disk, must not leave the others
    training alone until a collective times out). Called by every process at the same point."""
    if accelerator.num_processes == 1:
        return reason
    from accelerate.utils import gather_object

    return next((r for r in gather_object([reason]) if r is not None), None)


def preempt(loop):
    """A stop signal's end of a run: checkpoint (unless this step already has one: saved, or resumed here) and leave
    with errors.Preempted, which the CLI turns into exit code 75."""
    path = loop.checkpointer.saved_path
    if loop.checkpointer.saved_at != loop.position():
        path = loop.save_checkpoint()
    loop.print(f"stop signal ({loop.signals.name}): checkpoint saved at {path}")
    raise errors.Preempted(path)


@contextlib.contextmanager
def way_out(loop, signal_handlers=None):
    """Loop.fit()'s and validate()'s every way out. The DataLoaders' workers are closed (left running they would
    hang the exit) and what the run changed of the process is put back: the random generators it seeded,
    --full_determinism's kernel switches, the libraries' logging and progress bars it quieted, and the stop
    signals' previous handlers when it took them (`signal_handlers`): in a notebook or a sweep the process goes on.
    On an error or a stop the output_dir lock is released too, or it would refuse the next run here (the resume the
    stop asks for included) for as long as the process lives."""
    from . import logs, seeding
    from .lock import run_going

    try:
        with run_going():  # (a lock the run takes is a going run's until here: RunLock.running_here)
            try:
                yield
            except BaseException:
                loop.checkpointer.release()  # while the run still counts as going: a start meanwhile is refused
                raise
    finally:
        loop.close_dataloaders()
        seeding.restore_process_settings(loop.process_settings)
        logs.restore_libraries(getattr(getattr(loop, "runlog", None), "library_settings", None))
        if signal_handlers is not None:
            loop.signals.restore(signal_handlers)
