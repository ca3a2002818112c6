"""User errors: one sentence naming the problem and the fix, exit code 2, no traceback.

Anything a user can cause (a bad flag, a missing column, a broken file) raises `UserError`.
`run_cli` turns it into `error: <message>` on stderr and exit code 2. Internal bugs are
not caught and keep their tracebacks. `--debug` or `LOOP_DEBUG=1` shows the traceback of
user errors too. With several processes, what one of them alone fails stops every one with its line
(`stop_together`, `agreed`, `on_process`), not a collective's traceback or a hang on the others.
"""

import atexit
import errno
import os
import re
import socket
import sys
import traceback
import warnings

EXIT_USER_ERROR = 2
# Preempted (SIGTERM/SIGINT/SIGUSR1): a checkpoint was saved, resume with
# --resume_from_checkpoint latest. 75 is EX_TEMPFAIL from sysexits.h: "try again later".
EXIT_PREEMPTED = 75
# Ctrl-C outside the training steps (nothing to save): 128 + SIGINT, as a shell reports a process it interrupted.
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A mistake in the user's input or environment, reported as one line. `together`: every rank
    raises it at the same point (stop_together), so they can leave the process group
    together. `bug`: the line tells this rank of a bug on another rank (raised there with its
    traceback): not the user's to fix, so the exit code is a crash's (1), not 2. `alone`: only this
    rank can have hit it (out of memory in its step): it says it, whichever rank it is."""

    def __init__(self, *args, together=False, bug=False, alone=False):
        super().__init__(*args)
        self.together = together
        self.bug = bug
        self.alone = alone


class RunFinished(Exception):
    """Raised in setup() on every rank when `--resume_from_checkpoint auto` finds the run in output_dir
    finished with these same options: there is nothing to resume (fit() says so and returns best/'s metrics)."""


class Preempted(BaseException):
    """Raised after a checkpoint was written in response to a stop signal. A BaseException, as KeyboardInterrupt is:
    a sweep's `except Exception` around each fit() (a failed trial must not end the sweep) would swallow the stop,
    and each Ctrl-C would only end one trial."""

    def __init__(self, checkpoint):
        super().__init__(f"stopped by signal; checkpoint saved at {checkpoint}")
        self.checkpoint = checkpoint

    def __reduce__(self):  # (to a pool's parent process: its message once, not "checkpoint saved at stopped by ...")
        return type(self), (self.checkpoint,)


def short(e, limit=300):
    """An exception as a short clause for our one-sentence messages: its first sentence, no trailing dot. A
    larger `limit` keeps more sentences (datasets says what a dataset has after 'Config name is missing.')."""
    msg = " ".join(str(e).split()) or type(e).__name__
    if limit <= 300:
        msg = re.split(r"(?<=[.!?])\s+(?=[A-Z])", msg)[0]
    msg = msg.rstrip(".")
    return msg if len(msg) <= limit else msg[:limit - 3] + "..."


def divergence_fix(mixed_precision):
    """The advice for a run whose loss or weights became NaN or infinite: fp16's range is the usual cause under
    fp16 (bf16 has fp32's), a learning rate too high otherwise."""
    return "lower --learning_rate" + (" or use bf16 instead of fp16" if mixed_precision == "fp16" else "")


def listed(values, limit=10):
    """At most `limit` values for a message, and how many more there are."""
    values = list(values)
    # a name with spaces around it, an invisible character or nothing at all is quoted: 'POSITIVE\u200b' and
    # 'POSITIVE' would look the same
    shown = ", ".join(repr(v) if isinstance(v, str) and (v != v.strip() or not v.isprintable() or not v) else str(v)
                      for v in values[:limit])
    return shown + (f" ... and {len(values) - limit} more" if len(values) > limit else "")


# How libraries word a filesystem failure they wrap: safetensors raises SafetensorError("Error while
# serializing: I/O error: File too large (os error 27)") or "... IoError(Os { code: 28, ... })", torch.save
# RuntimeError("[enforce fail ...] PytorchStreamWriter failed writing ...") or, from its zip writer,
# "[enforce fail at inline_container.cc:672] . unexpected pos ..." and "basic_ios::clear: iostream error".
_STORAGE_WORDS = ("no space left", "disk quota", "file too large", "read-only file system", "permission denied",
                  "input/output error", "i/o error", "ioerror", "(os error", "os { code", "pytorchstreamwriter failed",
                  "file write failed", "inline_container.cc", "iostream error")


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def chain(e, during=False):
    """`e`, then each exception it was raised from (`raise ... from`), each once; with `during`, also one it was
    raised while handling (unless raised `from None`: then its own message is the whole story)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or ((None if e.__suppress_context__ else e.__context__) if during else None)


def is_storage_error(e):
    """True when `e`, or an exception it was raised from, is the filesystem failing (full disk,
    quota, file size limit, permissions): a user can fix that. Anything else while saving (a bug,
    also one raised while an OSError was being handled) keeps its traceback."""
    # (`raise ... from err` only: an error *during* handling is not caused by it)
    return any(isinstance(x, OSError) and x.errno in _STORAGE_ERRNOS or any(w in str(x).lower() for w in _STORAGE_WORDS)
               for x in chain(e))


def stop_together(accelerator, error, failure=None, every_rank=False):
    """After a check or a write done by the main process alone: every rank learns its `error`
    (a message, or None) and raises it as a UserError, so none waits for the main one in a
    collective. `failure`, an exception of the main process that is a bug, is raised there as it
    is (traceback kept); the other ranks raise `error`, which then describes it. `every_rank`: work
    every rank did (any may have failed): the first rank's error with a bug, else the first rank's error,
    stops them all, named by process and host when it is not process 0's. Every rank must call it, the same number
    of times; with one process it raises at once."""
    bug = failure is not None
    if accelerator.num_processes > 1 and every_rank:
        from accelerate.utils import gather_object

        errors = [(e if i == 0 else f"{on_process(i, host)}: {e}", b)  # which node's disk or copy failed
                  for i, (e, b, host) in enumerate(gather_object([(error, bug, socket.gethostname())])) if e]
        bugs = [e for e in errors if e[1]]  # a bug anywhere makes it a crash, whatever else failed
        error, bug = (bugs or errors or [(None, False)])[0]
    elif accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        error, bug = broadcast_object_list([(error, bug)])[0]
    if failure is not None:
        raise failure
    if error:
        raise UserError(error, together=True, bug=bug)  # another rank's bug: a crash (exit 1), not the user's


def agreed(accelerator, work, ranks=None, doing="preparing the data"):
    """work() on the processes `ranks` (all by default), then every process learns whether it failed on any: a
    UserError (or a bug) one node alone hits (its copy of the data or the model missing or broken, its datasets cache
    read-only) stops every rank with that line, naming the process and host, instead of leaving the others to die in
    the next collective with a gloo traceback (with NCCL, to wait there until the process group's timeout). The same
    error everywhere is said as it is; a bug is said as `doing` failed. Returns work()'s result (None on a process
    that did not run it)."""
    processes, index = getattr(accelerator, "num_processes", 1), getattr(accelerator, "process_index", 0)
    if processes == 1:  # (any error as raised)
        return work() if ranks is None or 0 in ranks else None
    result = error = failure = None
    if ranks is None or index in ranks:
        try:
            result = work()
        except UserError as e:
            error = str(e)
        except Exception as e:  # a bug: its traceback on this rank, the others stop with its line
            error, failure = f"{doing} failed ({type(e).__name__}: {short(e)})", e
    stop_together(accelerator, error, failure, every_rank=True)
    return result


def on_process(index, host):
    """How a line names one process of a multi-process run: which node to look at."""
    return f"process {index} on host '{host}'"


def is_main_rank():
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("0", "")


def is_node_main_rank():
    """The first process on this node (each node of a multi-node run has one, and a log of its own)."""
    return os.environ.get("LOCAL_RANK", "0") in ("0", "")


def _close_progress_bars():
    """Close open tqdm bars and end their line, so `error:` starts a line of its own."""
    tqdm = sys.modules.get("tqdm")
    bars = list(getattr(getattr(tqdm, "tqdm", None), "_instances", []))
    try:
        for bar in bars:
            bar.close()
        if bars:
            sys.stderr.write("\n")
    except (OSError, ValueError):  # stderr gone: see _say
        pass


def _say(line):
    """`line` on stderr, if there still is one: a launcher that piped our stderr may be gone (accelerate's one-process
    launcher, killed by a SIGUSR1 that SLURM sent every process), and a write into its broken pipe must not turn a
    clean exit (75, 2) into a traceback and exit 1."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a broken pipe, a closed file
        pass


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def show_our_warnings_plainly():
    """Our own warnings as `[loop] warning: ...` lines, like the rest of the console, instead of
    Python's `path/to/loop/data.py:44: UserWarning: ...` plus a source line; others as before."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserWarning) and os.path.abspath(filename).startswith(PACKAGE_DIR + os.sep):
            print(f"[loop] warning: {message}", file=file or sys.stderr, flush=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


INTERRUPTED = ("interrupted (Ctrl-C) before training or while scoring (--eval_only writes its files at the end): "
               "nothing was saved; run the command again.")


# Whether the process ends when a stop signal ends fit() (preemption.StopSignals): True under the command line
# (run_cli). In-process (a notebook, a sweep) the process goes on: fit() puts the previous handlers back after a stop
# too, and a second signal raises KeyboardInterrupt instead of ending the interpreter (a notebook's kernel).
exit_follows_stop = False


def run_cli(fn, argv=None, interrupted=INTERRUPTED):
    """Run `fn(argv)` and map user errors and preemption to exit codes; `interrupted` is the line for a
    Ctrl-C that reaches it (the command's own words for what it leaves)."""
    global exit_follows_stop
    before, exit_follows_stop = exit_follows_stop, True  # a stop ends this process: fit() leaves its handler for
    code = None  # the exit code of a run ended by an error, a stop or Ctrl-C
    try:  # the signal's echoes; back as it was after (loop.main() in a notebook, whose later fit()s are in-process)
        _run_cli(fn, argv, interrupted)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else None
        raise
    finally:
        exit_follows_stop = before
        if argv is None and code:  # the command line's own run (a call with its argv may go on)
            from .distributed import exit_past_gloo_workers

            exit_past_gloo_workers(code)


def out_of_open_files(e):
    """The UserError for `e` where it is this process out of open files (EMFILE: "Too many open files", torch's
    "Too many open files. Communication with the workers is no longer possible"), else None. A hard `ulimit -n`
    below what DataLoader workers need ended in a traceback (review rev3 F3): the limit is the user's to raise."""
    # by errno, or torch's own words; never the text of one of ours, which may quote the data (a validation row
    # labelled "Too many open files" of a log classifier: review rev F1)
    if not any(isinstance(x, OSError) and x.errno == errno.EMFILE or type(x) is RuntimeError and
               str(x).startswith("Too many open files. Communication with the workers")
               for x in chain(e) if not isinstance(x, UserError)):
        return None
    try:
        import resource

        limit = f" (`ulimit -n`: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
    except ImportError:  # (not on Windows)
        limit = ""
    return UserError(f"this process ran out of open files{limit}: raise that limit, or use fewer DataLoader workers "
                     f"where it has them (--dataloader_num_workers), each of which holds a few open here.", alone=True)


def _closed_consoles_to_null():
    """A command started with its stdout or stderr closed (`>&-`, `2>&-`): the next file it opened took that
    descriptor, and a write to the console (a library's, a child's) went into it; a stderr left on a descriptor not
    open for writing (a launcher's script, as pyenv's shims leave it) failed every note with EBADF (loop-predict
    then said its model "could not be loaded"); and Python's print(file=None) put the notes of a closed stderr
    among loop-predict's lines on stdout (audit72 nits). Each such descriptor is /dev/null from here, and a closed
    stderr a writer to it; a stdout that cannot be written is None for Python, as a closed one is (its runs are
    quiet, loop-predict refuses it: review rev F2)."""
    try:
        import fcntl
    except ImportError:  # (Windows: no such descriptors to mend; review rev F1)
        return
    for fd in (1, 2):
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:  # closed
            writable = False
        if not writable:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if fd == 1:
                sys.stdout = None
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")


def _run_cli(fn, argv, interrupted):
    from .config import command_line

    if argv is None:  # the command line's own run (a notebook's consoles are its kernel's)
        _closed_consoles_to_null()
    argv = list(command_line() if argv is None else argv)
    show_our_warnings_plainly()
    debug = os.environ.get("LOOP_DEBUG", "") not in ("", "0") or "--debug" in argv
    try:
        try:
            fn(argv)
        except UserError:  # ours, raised from whatever (review rev2 N1)
            raise
        except Exception as e:
            # (not one of ours: a library's OSError or RuntimeError, wherever the limit was met)
            raise (out_of_open_files(e) or e)
        # A finished run only exits from here; a stop signal in the second or more of shutdown (a job's time limit
        # landing as it ends) would report it killed (143) with every file written: ignored, as after a preemption
        _ignore_stop_signals_at_exit()
    except UserError as e:
        if debug:
            traceback.print_exc()
        msg = " ".join(str(e).split())
        if not e.bug:  # another rank's bug (its traceback above) is a crash: launch.sh keeps the launcher's 1
            _tell_launch_sh("user_error", msg)  # first: it is what launch.sh goes by, whatever becomes of stderr
            _tell_torchrun(msg)  # its failure table then shows the line, also of a rank that prints nothing
        # The main process says it, once. An error every rank raised together is its error too; one raised
        # apart (a file missing on one node) may be this node's alone: the first rank of each node says it; one
        # only this rank can have met (out of memory), this rank.
        if is_main_rank() or debug or e.alone or (not e.together and is_node_main_rank()):
            _close_progress_bars()
            _say(f"error: {msg}")
        if e.together:  # every rank stops here: leave together, or a rank's gloo threads may abort (SIGABRT)
            _leave_process_group()
        sys.exit(1 if e.bug else EXIT_USER_ERROR)
    except KeyboardInterrupt:  # Ctrl-C where fit()'s stop handlers are not installed: --eval_only, or before fit
        if debug:
            traceback.print_exc()
        if is_main_rank() or debug:
            _close_progress_bars()
            _say(f"error: {interrupted}")
        sys.exit(EXIT_INTERRUPTED)
    except Preempted as e:
        _tell_launch_sh("preempted")  # first: it is what launch.sh goes by, whatever becomes of stderr
        if is_main_rank():
            _say(f"preempted: {e}; resume with --resume_from_checkpoint latest")
        _leave_process_group()
        # The checkpoint is saved: from here the process only exits. Python puts the default handlers back
        # while it shuts down (a second or more with torch loaded), and a launcher's or the scheduler's
        # repeat of the signal would then end it with 143 instead of 75: ignore them for those last moments.
        # (At exit, not now: run_cli may be called by a process that goes on, and ignored signals are
        # inherited by every process it starts after.)
        _ignore_stop_signals_at_exit()
        sys.exit(EXIT_PREEMPTED)


def _ignore_stop_signals_at_exit():
    """From the start of the interpreter's shutdown, stop signals are ignored (once registered per process)."""
    from .preemption import ignore_stop_signals

    atexit.unregister(ignore_stop_signals)
    atexit.register(ignore_stop_signals)


def _leave_process_group():
    """After a preemption, or a user error every rank raised together, every rank leaves here together:
    a barrier, then the process group is torn down explicitly. Left to interpreter shutdown, a rank
    that exits first closes its connections under another rank's gloo threads, which then abort
    (SIGABRT, 'terminate called without an active exception') instead of exiting 75 or 2."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except Exception:  # a rank already gone (a second signal exits at once): nothing to leave cleanly
        pass


def _tell_torchrun(msg):
    """Under torchrun (and accelerate launch's multi-process launcher, the same elastic agent), this rank's error
    line into the reply file the agent reads when the rank exits (TORCHELASTIC_ERROR_FILE, as torch's @record
    writes it): its failure table then says `traceback : error: <the line>` for this rank, rather than a pointer
    to the elastic docs. An error one rank hits alone (a variant's check on process 1) is printed by no
    process (only the first of each node prints), and was said nowhere (audit61)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    import json
    import time

    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"message": {"message": f"UserError: {msg}", "extraInfo": {
                "py_callstack": f"error: {msg}", "timestamp": str(int(time.time()))}}}, f)
    except OSError:  # the agent's folder gone: the exit code still says it
        pass


def _tell_launch_sh(mark, text=""):
    """Under launch.sh, leave `mark` (`preempted`, `user_error`) in its LOOP_PID_DIR: the launcher of several
    processes turns our exit codes 75 and 2 into its own failure (1), so a signal sent to the training processes
    alone (not to launch.sh) would end launch.sh with 1 instead of 75 (a requeue script would not resume), and a
    job script could not tell "fix your flags" from a crash. `text` (the error line) goes in the mark, the
    first rank's to get there: launch.sh repeats it last, under the launcher's traceback, and it is the
    only copy of an error a rank that prints nothing hit alone."""
    pid_dir = os.environ.get("LOOP_PID_DIR")
    if pid_dir:
        try:
            with open(os.path.join(pid_dir, mark), "x") as f:
                f.write(text)
        except OSError:  # there already (another rank's), or the folder is gone
            pass
