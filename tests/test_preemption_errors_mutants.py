"""Mutation audit m11 (audit66): loop/preemption.py and loop/errors.py, behaviour no other test pinned.

Each test kills a mutant that survived the signal and error tests (named in its docstring). All of them are
unit tests: no training, no subprocess; os._exit, the clock, the collectives and the launcher's exit are faked.
"""

import errno
import os
import signal
import sys
import types
import warnings

import pytest

from test_resume import Exited, fake_clock_and_exit


@pytest.fixture
def handlers():
    """The stop signals' handlers, put back after the test whatever it installed."""
    from loop import preemption

    before = {s: signal.getsignal(s) for s in preemption.STOP_SIGNALS}
    yield before
    for s, old in before.items():
        signal.signal(s, old)


@pytest.fixture
def clock(monkeypatch):
    """preemption's clock as a list to move by hand, its os._exit raising Exited(code), no children killed."""
    from loop import preemption

    monkeypatch.setattr(preemption, "kill_children", lambda: None)
    return fake_clock_and_exit(monkeypatch)


# ------------------------------------------------------------------ preemption: the handler
def test_every_stop_signal_is_taken_sighup_and_sigusr1_included(handlers):
    """(m11 P01) SIGHUP (a dropped ssh session) and SIGUSR1 (SLURM's --signal=USR1@90) are stop signals like
    SIGTERM and SIGINT: install() takes each of them, so they save a checkpoint instead of killing the run."""
    from loop import preemption

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signals = preemption.StopSignals()
    previous = signals.install()
    try:
        assert set(previous) == {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP}
        assert all(signal.getsignal(s) == signals._handle for s in previous)
    finally:
        signals.restore(previous)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP, signal.SIGINT])
def test_the_first_signal_line_names_the_signal_taken_and_says_how_to_exit_at_once(monkeypatch, capfd, clock, sig):
    """(m11 P27, P28) The line a stop prints names the signal that came (not always SIGTERM: SLURM sends SIGUSR1, a
    dropped terminal SIGHUP) and tells the user that sending it again exits at once."""
    from loop import preemption

    monkeypatch.setenv("RANK", "0")
    s = preemption.StopSignals()
    s.pid = os.getpid()
    s._handle(sig, None)
    name = signal.Signals(sig).name
    assert capfd.readouterr().err == (f"[loop] {name}: finishing the current step (or evaluation, or setup), then "
                                      f"saving a checkpoint (send it again to exit at once)\n")


def test_a_second_signal_says_it_exits_without_a_checkpoint(monkeypatch, capfd, clock):
    """(m11 P32) A real second signal under the command line exits at once with 128 + signal, and says that no
    checkpoint was saved (before this, only a slow end-to-end test read the line)."""
    from loop import errors, preemption

    monkeypatch.setattr(errors, "exit_follows_stop", True)
    monkeypatch.setenv("RANK", "0")
    s = preemption.StopSignals()
    s.pid = os.getpid()
    s._handle(signal.SIGUSR1, None)
    capfd.readouterr()
    clock[0] += preemption.SIGNAL_ECHO_S + 0.5
    with pytest.raises(Exited) as e:
        s._handle(signal.SIGUSR1, None)
    assert e.value.args == (128 + signal.SIGUSR1,)
    assert capfd.readouterr().err == "[loop] second SIGUSR1: exiting without a checkpoint\n"


def test_a_signal_just_after_the_first_is_an_echo_not_a_second_signal(monkeypatch, clock):
    """(m11 P03, P29) One preemption reaches a process two or three times within milliseconds (a launcher passes
    it on, SLURM signals the process group): within SIGNAL_ECHO_S (2 s) a repeat is an echo, ignored; the window
    is not zero."""
    from loop import errors, preemption

    monkeypatch.setattr(errors, "exit_follows_stop", True)
    assert preemption.SIGNAL_ECHO_S >= 1
    s = preemption.StopSignals()
    s.pid = os.getpid()
    s._handle(signal.SIGTERM, None)
    clock[0] += 0.01
    s._handle(signal.SIGINT, None)  # the echo (a terminal's Ctrl-C reaches the group): still running
    assert s.signum == signal.SIGTERM


def test_the_stop_is_named_for_the_signal_or_another_rank():
    """(m11 P43) The checkpoint line says `stop signal (SIGUSR1): ...` on the rank that got it, `(another rank)` on
    a rank stopped by the agreement."""
    from loop import preemption

    s = preemption.StopSignals()
    assert s.name == "another rank"
    s.signum = signal.SIGUSR1
    assert s.name == "SIGUSR1"


def test_restore_puts_a_handler_python_did_not_set_back_as_the_default(handlers, monkeypatch):
    """(m11 P23) signal.getsignal() is None for a handler not installed from Python (a C library's): restore() puts
    SIG_DFL there (signal.signal(sig, None) is a TypeError, which would end fit() with a traceback after a run)."""
    from loop import errors, preemption

    monkeypatch.setattr(errors, "exit_follows_stop", False)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    preemption.StopSignals().restore({signal.SIGUSR1: None})
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_a_worker_forked_under_the_handler_exits_at_a_real_second_signal_only(monkeypatch, clock):
    """(m11 P33, P34) A datasets map worker, forked from the installing process: a first signal and its echo are
    ignored, a repeat past SIGNAL_ECHO_S exits with 128 + signal; once its parent (the installing process) is gone, any
    signal exits at once."""
    from loop import preemption

    installer = os.getpid() + 10_000
    parent = [installer]
    monkeypatch.setattr(preemption.os, "getppid", lambda: parent[0])
    w = preemption.StopSignals()
    w.pid = installer
    w._handle(signal.SIGTERM, None)
    clock[0] += 0.5
    w._handle(signal.SIGTERM, None)
    clock[0] += preemption.SIGNAL_ECHO_S
    with pytest.raises(Exited) as e:
        w._handle(signal.SIGINT, None)
    assert e.value.args == (128 + signal.SIGINT,)
    orphan = preemption.StopSignals()
    orphan.pid = installer
    parent[0] = 1  # re-parented to init: the installing process died
    with pytest.raises(Exited) as e:
        orphan._handle(signal.SIGTERM, None)
    assert e.value.args == (128 + signal.SIGTERM,)


def test_a_dataloader_worker_ignores_every_stop_signal(handlers):
    """(m11 P04) ignore_stop_signals sets each stop signal to SIG_IGN (a DataLoader worker, a preempted process as
    it exits), not to the default, which would kill it."""
    from loop import preemption

    preemption.ignore_stop_signals(0)
    assert {s: signal.getsignal(s) for s in preemption.STOP_SIGNALS} == {s: signal.SIG_IGN
                                                                         for s in preemption.STOP_SIGNALS}


class Child:
    """A multiprocessing record: killed, or another process's (a record a bare os.fork inherited)."""

    def __init__(self, killed, parent=None):
        self.killed, self._parent_pid = killed, os.getpid() if parent is None else parent

    def kill(self):
        self.killed.append(self)

    def terminate(self):  # SIGTERM: a worker carries on through it (it ignores it, or takes it as a first signal)
        pass


def test_a_second_signal_kills_the_workers_of_both_pools_and_only_this_processs(monkeypatch):
    """(m11 P14-P17) kill_children SIGKILLs (not SIGTERMs, which workers carry on through) the children recorded by
    datasets' `multiprocess` and by `multiprocessing`, those of this process only; a module whose records cannot be
    read (changed meanwhile) does not keep the other's workers alive."""
    from loop import preemption

    killed = []
    mine, inherited = Child(killed), Child(killed, parent=os.getpid() + 1)

    def broken():
        raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setitem(sys.modules, "multiprocess", types.SimpleNamespace(active_children=lambda: [mine, inherited]))
    monkeypatch.setitem(sys.modules, "multiprocessing", types.SimpleNamespace(active_children=broken))
    preemption.kill_children()
    assert killed == [mine]
    killed.clear()
    monkeypatch.setitem(sys.modules, "multiprocess", types.SimpleNamespace(active_children=broken))
    monkeypatch.setitem(sys.modules, "multiprocessing", types.SimpleNamespace(active_children=lambda: [mine]))
    preemption.kill_children()
    assert killed == [mine]


# ------------------------------------------------------------------ preemption: the launcher's end
def test_a_launcher_gone_before_the_request_is_taken_as_its_sigterm(monkeypatch):
    """(m11 P06) PR_SET_PDEATHSIG asks for a SIGTERM when the parent exits; a launcher that ended before the request
    never sends it: the process, re-parented meanwhile, signals itself, so it still saves a checkpoint."""
    from loop import preemption

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    calls = []

    class Libc:
        def prctl(self, *args):
            calls.append(args)
            return 0

    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Libc())
    monkeypatch.setattr(preemption, "_launcher_drops_stops", lambda parent: True)
    parents = iter([4242, 1])  # the launcher, then init: it was gone before prctl
    monkeypatch.setattr(preemption.os, "getppid", lambda: next(parents))
    sent = []
    monkeypatch.setattr(preemption.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    preemption.stop_with_launcher()
    assert calls == [(1, int(signal.SIGTERM), 0, 0, 0)] and sent == [(os.getpid(), signal.SIGTERM)]
    parents = iter([4242, 4242])  # the launcher still there: nothing sent now (its exit will)
    monkeypatch.setattr(preemption.os, "getppid", lambda: next(parents))
    sent.clear()
    preemption.stop_with_launcher()
    assert sent == []


# ------------------------------------------------------------------ preemption: agreement across ranks
class FakeDist:
    """torch.distributed for connect(): initialized, with `backend`; new_group may fail."""

    def __init__(self, backend, new_group_fails=False):
        self.backend, self.new_group_fails, self.groups = backend, new_group_fails, []

    def is_initialized(self):
        return True

    def get_backend(self):
        return self.backend

    def new_group(self, backend):
        if self.new_group_fails:
            raise RuntimeError("no gloo here")
        self.groups.append(backend)
        return "gloo side group"


def accelerator(n=2, xla=False):
    from accelerate.utils import DistributedType

    return types.SimpleNamespace(num_processes=n, device="cpu",
                                 distributed_type=DistributedType.XLA if xla else DistributedType.MULTI_GPU)


@pytest.mark.parametrize("backend, fails, xla, group", [
    ("gloo", False, False, None),  # the default group is already on the CPU
    ("nccl", False, False, "gloo side group"),
    ("nccl", True, False, "device"),  # no gloo side channel: through the device
    ("gloo", False, True, "device"),  # XLA: its collectives
])
def test_how_ranks_agree_follows_the_backend(monkeypatch, backend, fails, xla, group):
    """(m11 P35, P36, P37) connect() picks how ranks agree on a stop: the default group under gloo, a gloo side
    group under NCCL (asking every step must not sync the GPU), the device when no gloo group can be made (never
    'no agreement': a stop on one rank would leave the others waiting in a collective), the device under XLA."""
    import torch.distributed

    from loop import preemption

    fake = FakeDist(backend, fails)
    for name in ("is_initialized", "get_backend", "new_group"):
        monkeypatch.setattr(torch.distributed, name, getattr(fake, name))
    s = preemption.StopSignals()
    s.connect(accelerator(xla=xla))
    assert s._group == group


def test_ranks_stop_together_when_any_rank_got_a_signal(monkeypatch):
    """(m11 P39, P40) Through a gloo group, each rank's flag is reduced with MAX: every rank stops if any got a
    signal (MIN would stop none, and the signalled rank's wish would be lost). The other rank is faked in the
    collective."""
    import torch
    import torch.distributed

    from loop import preemption

    other = [0]
    ops = {torch.distributed.ReduceOp.MAX: max, torch.distributed.ReduceOp.MIN: min}

    def all_reduce(t, op, group):
        t.fill_(ops[op](int(t.item()), other[0]))

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    s = preemption.StopSignals()
    s._group = None  # the default gloo group
    for mine, theirs, stop in ((None, 0, False), (signal.SIGTERM, 0, True), (None, 1, True), (signal.SIGTERM, 1, True)):
        s.signum, other[0] = mine, theirs
        assert s.agree(None, 7, 50) is stop, (mine, theirs)


def test_through_the_device_ranks_agree_on_logging_steps_only(monkeypatch):
    """(m11 P38, P44) Agreeing through the device syncs it: only on logging steps, and between them every rank says
    'go on' whatever its own flag (a rank that answered its own flag alone would stop without the others). On a
    logging step the flags are summed: one rank's signal stops them all."""
    from loop import preemption

    other = [0]

    def reduce(t, reduction):
        assert reduction == "sum"
        return t + other[0]

    acc = types.SimpleNamespace(device="cpu", reduce=reduce)
    s = preemption.StopSignals()
    s._group = "device"
    s.signum = signal.SIGTERM
    assert s.agree(acc, 3, 5) is False  # not a logging step: go on, the stop comes at step 5
    assert s.agree(acc, 5, 5) is True
    s.signum, other[0] = None, 1
    assert s.agree(acc, 10, 5) is True
    other[0] = 0
    assert s.agree(acc, 10, 5) is False


def test_a_reason_to_stop_of_any_rank_is_every_ranks(monkeypatch):
    """(m11 P41, P42) agree_reason: with several processes every rank takes the first reason any rank has (a time
    budget or a stop file seen on one node), not its own, not None because rank 0 had none."""
    import accelerate.utils

    from loop import preemption

    gathered = [None, "stop file", "time budget"]
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objs: gathered)
    acc = types.SimpleNamespace(num_processes=3)
    assert preemption.agree_reason(acc, None) == "stop file"
    gathered[:] = [None, None, None]
    assert preemption.agree_reason(acc, None) is None


# ------------------------------------------------------------------ errors: messages
def test_short_is_the_first_sentence_without_its_dot_and_at_most_limit_characters():
    """(m11 E04-E07, E40) short(e): whitespace collapsed, the first sentence only (a dot before a lower-case word or
    a digit does not end one), no trailing dot, cut to `limit` characters with '...', the type's name when the
    message is empty; a limit above 300 keeps every sentence."""
    from loop.errors import short

    assert short(OSError("No space left on device.  Errno 28.")) == "No space left on device"
    assert short(ValueError("expected v. 2.0. got 1.9")) == "expected v. 2.0. got 1.9"
    assert short(ValueError("")) == "ValueError"
    assert short(ValueError("x" * 400)) == "x" * 297 + "..."
    assert len(short(ValueError("y" * 400), limit=50)) == 50
    assert short(ValueError("a b. Config name is missing."), limit=300) == "a b"
    assert short(ValueError("a b. Config name is missing."), limit=301) == "a b. Config name is missing"


def test_listed_shows_ten_and_counts_the_rest_quoting_what_would_look_alike():
    """(m11 E09-E11) listed(): at most 10 values, then how many more; a name with spaces around it, an invisible
    character or nothing at all is quoted, so it does not look like another."""
    from loop.errors import listed

    assert listed(range(12)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 ... and 2 more"
    assert listed(range(10)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    assert listed(["POS", "POS\u200b", " NEG", ""]) == "POS, 'POS\\u200b', ' NEG', ''"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                                  errno.EIO])
def test_a_storage_errno_is_the_users_whatever_its_message_says(code):
    """(m11 E12, E14) The filesystem's errno decides, not only the English words: under a non-English locale
    strerror is translated ('Keine Berechtigung', 'Auf dem Gerät ist kein Speicherplatz mehr verfügbar'), and a full
    disk or a permission must still be one line; another errno with such a message is not."""
    from loop.errors import is_storage_error

    assert is_storage_error(OSError(code, "Fehler beim Schreiben")) is True
    assert is_storage_error(RuntimeError("save failed")) is False
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(code, "Fehler beim Schreiben")
    assert is_storage_error(wrapped) is True
    assert is_storage_error(OSError(errno.ENOENT, "Fehler beim Schreiben")) is False


def test_divergence_advice_mentions_bf16_under_fp16_only():
    """(m11 E08) A NaN loss under fp16 advises bf16 too; under bf16 or fp32 only a lower learning rate."""
    from loop.errors import divergence_fix

    assert divergence_fix("fp16") == "lower --learning_rate or use bf16 instead of fp16"
    assert divergence_fix("bf16") == divergence_fix("no") == divergence_fix(None) == "lower --learning_rate"


def test_the_preempted_line_names_the_checkpoint_and_how_to_resume(monkeypatch, capsys):
    """(m11 E03, E28) A stop under the command line ends with one line: the checkpoint's path and the flag that
    resumes from it; exit 75."""
    from loop import errors

    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("LOOP_PID_DIR", raising=False)
    monkeypatch.setattr(errors, "_ignore_stop_signals_at_exit", lambda: None)

    def fn(argv):
        raise errors.Preempted("out/checkpoints/step_3")

    with pytest.raises(SystemExit) as e:
        errors.run_cli(fn, [])
    assert e.value.code == 75
    assert capsys.readouterr().err == ("preempted: stopped by signal; checkpoint saved at out/checkpoints/step_3; "
                                       "resume with --resume_from_checkpoint latest\n")


# ------------------------------------------------------------------ errors: run_cli
def test_ctrl_c_is_the_commands_own_line_said_by_the_main_process_only(monkeypatch, capsys):
    """(m11 E26, E27) Ctrl-C outside the training steps: exit 130 and the command's own line (loop-predict passes
    its words), said once per job by the main process."""
    from loop import errors

    def fn(argv):
        raise KeyboardInterrupt

    for rank, said in (("0", "error: predict's own words\n"), ("1", "")):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as e:
            errors.run_cli(fn, [], interrupted="predict's own words")
        assert e.value.code == 130 and capsys.readouterr().err == said


def test_loop_debug_0_is_off(monkeypatch, capsys):
    """(m11 E22) LOOP_DEBUG=0 (a job script's default) does not show a user error's traceback; LOOP_DEBUG=1 does."""
    from loop import errors

    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("LOOP_PID_DIR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)

    def fn(argv):
        raise errors.UserError("a bad flag")

    for value, traceback in (("0", False), ("1", True)):
        monkeypatch.setenv("LOOP_DEBUG", value)
        with pytest.raises(SystemExit):
            errors.run_cli(fn, [])
        assert ("Traceback" in capsys.readouterr().err) is traceback


def test_a_finished_or_preempted_run_ignores_stop_signals_once_it_exits(monkeypatch):
    """(m11 E23, E29) From the start of the interpreter's shutdown the stop signals are ignored, after a finished run
    and after a preemption (a time limit's signal landing in the second of shutdown would make it exit 143 with
    everything saved); not after a user error. Registered with atexit, not done at once (a caller that goes on keeps
    its handlers)."""
    from loop import errors, preemption

    registered = []
    monkeypatch.setattr(errors.atexit, "register", registered.append)
    monkeypatch.setattr(errors.atexit, "unregister", lambda f: registered.remove(f) if f in registered else None)
    monkeypatch.delenv("LOOP_PID_DIR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    errors.run_cli(lambda argv: None, [])
    assert registered == [preemption.ignore_stop_signals]
    registered.clear()
    with pytest.raises(SystemExit):
        errors.run_cli(lambda argv: (_ for _ in ()).throw(errors.Preempted("ck")), [])
    assert registered == [preemption.ignore_stop_signals]
    registered.clear()
    with pytest.raises(SystemExit):
        errors.run_cli(lambda argv: (_ for _ in ()).throw(errors.UserError("bad")), [])
    assert registered == []


def test_a_user_error_goes_into_torchruns_error_file(monkeypatch, tmp_path, capsys):
    """(m11 E24, E32) Under torch elastic the error line goes into TORCHELASTIC_ERROR_FILE, so the agent's failure
    table shows it for a rank that prints nothing; another rank's bug does not."""
    import json

    from loop import errors

    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOOP_PID_DIR", raising=False)
    with pytest.raises(SystemExit):
        errors.run_cli(lambda argv: (_ for _ in ()).throw(errors.UserError("no  file here")), [])
    reply = json.loads(path.read_text())["message"]
    assert reply["message"] == "UserError: no file here" and reply["extraInfo"]["py_callstack"] == "error: no file here"
    path.unlink()
    with pytest.raises(SystemExit):
        errors.run_cli(lambda argv: (_ for _ in ()).throw(errors.UserError("rank 0 crashed", bug=True)), [])
    assert not path.exists()


def test_launch_sh_gets_the_first_ranks_line_not_a_later_ones(monkeypatch, tmp_path):
    """(m11 E33) The `user_error` mark holds the line of the first rank to get there: a later rank's does not
    replace it (launch.sh repeats it as the run's error)."""
    from loop import errors

    monkeypatch.setenv("LOOP_PID_DIR", str(tmp_path))
    errors._tell_launch_sh("user_error", "first")
    errors._tell_launch_sh("user_error", "second")
    assert (tmp_path / "user_error").read_text() == "first"


def test_an_error_every_rank_raised_together_leaves_the_process_group_with_a_barrier(monkeypatch, capsys):
    """(m11 E25, E31) A user error every rank raised together (stop_together) ends with a barrier, then the
    process group torn down, so no rank closes its connections under another's gloo threads (SIGABRT)."""
    import torch.distributed as dist

    from loop import errors

    calls = []
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.delenv("LOOP_PID_DIR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    with pytest.raises(SystemExit):
        errors.run_cli(lambda argv: (_ for _ in ()).throw(errors.UserError("bad", together=True)), [])
    assert calls == ["barrier", "destroy"]
    calls.clear()
    with pytest.raises(SystemExit):
        errors.run_cli(lambda argv: (_ for _ in ()).throw(errors.UserError("bad")), [])  # one rank's: no group
    assert calls == []


# ------------------------------------------------------------------ errors: stop_together, ranks, warnings
def test_stop_together_raises_a_bug_as_it_is_and_a_message_as_a_user_error():
    """(m11 E16, E17) stop_together on one process: a failure (a bug) is raised as it is, traceback kept; a message
    is a UserError raised together; no message, nothing."""
    from loop.errors import UserError, stop_together

    acc = types.SimpleNamespace(num_processes=1)
    bug = RuntimeError("a bug")
    with pytest.raises(RuntimeError) as e:
        stop_together(acc, "writing failed: a bug", failure=bug)
    assert e.value is bug
    with pytest.raises(UserError) as e:
        stop_together(acc, "disk full")
    assert e.value.together and not e.value.bug
    stop_together(acc, None)


def test_stop_together_of_every_rank_prefers_a_bug_and_marks_it_a_crash(monkeypatch):
    """(m11 E15, E17, E37) every_rank: the ranks' errors are gathered; a bug anywhere wins over a user error elsewhere
    and is a crash (bug=True, exit 1); else the first rank's error; the rank whose failure it was raises it."""
    import accelerate.utils

    from loop.errors import UserError, stop_together

    gathered = []
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objs: gathered)
    acc = types.SimpleNamespace(num_processes=3)
    gathered[:] = [(None, False, "n0"), ("disk full on rank 1", False, "n1"), ("bug on rank 2", True, "n2")]
    with pytest.raises(UserError) as e:
        stop_together(acc, None, every_rank=True)
    assert e.value.bug and str(e.value) == "process 2 on host 'n2': bug on rank 2"  # (which node to look at)
    gathered[:] = [(None, False, "n0"), ("disk full on rank 1", False, "n1"), ("quota on rank 2", False, "n2")]
    with pytest.raises(UserError) as e:
        stop_together(acc, None, every_rank=True)
    assert not e.value.bug and str(e.value) == "process 1 on host 'n1': disk full on rank 1"
    gathered[:] = [("quota on rank 0", False, "n0"), ("disk full on rank 1", False, "n1"), (None, False, "n2")]
    with pytest.raises(UserError) as e:  # process 0's error as it is
        stop_together(acc, None, every_rank=True)
    assert str(e.value) == "quota on rank 0"
    gathered[:] = [(None, False, "n0")] * 3
    stop_together(acc, None, every_rank=True)


def test_the_main_rank_is_rank_0_or_local_rank_0_without_a_rank(monkeypatch):
    """(m11 E18) A launcher that sets LOCAL_RANK only: process 1 is not the main one (it would print every line
    again)."""
    from loop.errors import is_main_rank

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert is_main_rank() is False
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_main_rank() is True


def test_an_error_closes_the_open_progress_bars_first(monkeypatch, capsys):
    """(m11 E41) An open tqdm bar is closed before `error:` is printed: left open, it is drawn again after the error
    line (by its monitor thread, or as it is closed at exit)."""
    from tqdm import tqdm

    from loop import errors

    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("LOOP_PID_DIR", raising=False)
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    bars = []

    def fn(argv):
        bars.append(tqdm(total=10, file=sys.stderr))
        bars[0].update(3)
        raise errors.UserError("a bad flag")

    with pytest.raises(SystemExit):
        errors.run_cli(fn, [])
    err = capsys.readouterr().err
    assert bars[0].disable and err.endswith("\nerror: a bad flag\n")  # closed (its last line drawn) before
    bars[0].close()


def test_only_our_own_warnings_become_loop_lines(monkeypatch, capsys):
    """(m11 E20) show_our_warnings_plainly: a warning raised in loop/ is `[loop] warning: ...`; a library's keeps
    Python's form (its file and line: where to look)."""
    from loop import errors

    python = []  # Python's own form, as it was before
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, filename, *a: python.append(filename))
    errors.show_our_warnings_plainly()
    warnings.showwarning("ours", UserWarning, os.path.join(errors.PACKAGE_DIR, "data.py"), 4)
    warnings.showwarning("theirs", UserWarning, "/site-packages/datasets/load.py", 7)
    warnings.showwarning("a neighbour", UserWarning, errors.PACKAGE_DIR + "_extras/x.py", 7)  # not in loop/
    assert capsys.readouterr().err == "[loop] warning: ours\n"
    assert python == ["/site-packages/datasets/load.py", errors.PACKAGE_DIR + "_extras/x.py"]
