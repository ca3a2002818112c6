"""Resume at odd moments (audit B): auto after a run died before its first checkpoint, a checkpoint save
that fails under two processes, resuming an older checkpoint (the abandoned timeline), and a stop
during setup after resuming a checkpoint from outside --output_dir. Then (audit): a resume path that is a
model, run or checkpoints/ folder, the same data files with other labels, and another run's checkpoint
resumed into a new --output_dir (its best/ comes along, or the best tracking starts over).
"""

import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest

from conftest import FAULTS, ROOT, env, evals, launcher, read_jsonl, run_cli, tiny_args, train_logs, write_data
from loop import checkpoint_folders
from loop import checkpoint as ckpt
from loop import lock as output_lock
from loop import resume_checks
from loop import storage
from loop.errors import EXIT_PREEMPTED, UserError
from loop.version import __version__ as LOOP_VERSION


def small(model, data, out, **over):
    base = dict(max_train_samples=96, max_eval_samples=48, num_train_epochs=2, logging_steps=1)
    base.update(over)
    return tiny_args(model, data, out, **base)


def cli(args, script="loop/train.py", **kw):
    return run_cli(args, script=script, how="python", check=False, timeout=300, **kw)


def steps(out):
    return [s for s, _ in ckpt.list_checkpoints(os.path.join(out, "checkpoints"))]


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------- auto: a run that died before its first checkpoint
def checker(model, data, out, **over):
    """A Checkpointer on a stand-in loop (one process): the output_dir checks alone, no training."""
    from loop.config import parse_args

    cfg = parse_args(tiny_args(model, data, out, **over))
    loop = SimpleNamespace(cfg=cfg, accelerator=SimpleNamespace(is_main_process=True, num_processes=1))
    return ckpt.Checkpointer(loop)


def earlier_run(out, lock_pid=None):
    """best/ and metrics.jsonl, no checkpoint; with `lock_pid`, the lock that process left."""
    os.makedirs(os.path.join(out, "best"))
    with open(os.path.join(out, "best", "model.safetensors"), "w") as f:
        f.write("weights")
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        f.write('{"step": 5, "loss": 0.7}\n')
    if lock_pid:
        import socket

        with open(os.path.join(out, output_lock.LOCK_FILE), "w") as f:
            json.dump({"host": socket.gethostname(), "pid": lock_pid, "started": "2026-01-01T00:00:00"}, f)


def test_auto_starts_over_a_dead_run_without_checkpoint_refuses_a_finished_one(tiny_model, tiny_data, tmp_path, capsys):
    # a run killed (-9, OOM) after its first evaluation, before its first checkpoint: its stale lock is left
    out = str(tmp_path / "died")
    earlier_run(out, lock_pid=dead_pid())
    c = checker(tiny_model, tiny_data, out, resume_from_checkpoint="auto")
    c.check_output_dir()
    c.release()
    assert c.resume_path is None and c._clear_earlier  # a first start: the dead run's log goes
    said = [line for line in capsys.readouterr().err.splitlines() if "auto" in line]
    assert len(said) == 1 and "died before its first checkpoint" in said[0] and "starting it over" in said[0], said

    # a finished run that kept no checkpoint (it released its lock): refused, unless --overwrite_output_dir
    out = str(tmp_path / "finished")
    earlier_run(out)
    with pytest.raises(UserError, match="auto: --output_dir .* holds best/ but no checkpoint"):
        checker(tiny_model, tiny_data, out, resume_from_checkpoint="auto").check_output_dir()
    assert not os.path.exists(os.path.join(out, output_lock.LOCK_FILE))
    c = checker(tiny_model, tiny_data, out, resume_from_checkpoint="auto", overwrite_output_dir="true")
    c.check_output_dir()
    c.release()
    assert c.resume_path is None and c._clear_earlier

    # a lock this very process holds (an earlier fit() here that raised) is no dead run
    held = output_lock.RunLock(out)
    held.acquire()
    try:
        with pytest.raises(UserError, match="holds best/ but no checkpoint"):
            checker(tiny_model, tiny_data, out, resume_from_checkpoint="auto").check_output_dir()
    finally:
        held.release()


def test_auto_names_itself_and_its_advice_works(tiny_model, tiny_data, tmp_path, capsys):
    """The only checkpoint damaged: the error says auto (not latest), and its advice, --overwrite_output_dir
    with auto still in the job script, starts the run over."""
    out = str(tmp_path / "run")
    earlier_run(out)
    step = os.path.join(out, "checkpoints", "step_20")
    os.makedirs(step)
    with open(os.path.join(step, "model.safetensors"), "w") as f:
        f.write("weights")
    storage.write_json(os.path.join(step, ckpt.STATE_FILE), {"state": {"global_step": 20},
                                                          "files": {"model.safetensors": "0" * 64}})
    with pytest.raises(UserError) as e:
        checker(tiny_model, tiny_data, out, resume_from_checkpoint="auto").check_output_dir()
    assert "--resume_from_checkpoint auto:" in str(e.value) and "latest" not in str(e.value), e.value
    assert "--overwrite_output_dir" in str(e.value)
    c = checker(tiny_model, tiny_data, out, resume_from_checkpoint="auto", overwrite_output_dir="true")
    c.check_output_dir()
    c.release()
    assert c.resume_path is None and c._clear_earlier
    assert "starting the run over" in capsys.readouterr().err


def test_auto_requeue_after_kill9_between_first_evaluation_and_first_checkpoint(tiny_model, tiny_data, tmp_path):
    out = str(tmp_path / "run")
    args = small(tiny_model, tiny_data, out, eval_steps=2, checkpointing_steps=5, resume_from_checkpoint="auto")
    proc = cli(args, script=FAULTS, LOOP_TEST_CRASH_AT_STEP=3)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert os.path.isdir(os.path.join(out, "best")) and not steps(out)
    proc = cli(args)  # the requeue: the same command
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "died before its first checkpoint" in proc.stderr
    assert [e["step"] for e in evals(out)] == [2, 4, 6, 8, 10, 12]  # one run's log, from the start


# ---------------------------------------------------------------- a checkpoint save that fails, two processes
FULL_DISK = """
import errno, os, sys
sys.path.insert(0, {root!r})
import loop
from loop import checkpoint

where = os.environ["FAIL_IN"]
if where == "mark_complete":  # the main process, after save_state: optimizer.bin or loop_state.json
    real = checkpoint.Checkpointer.mark_complete
    def full(self, tmp, info):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)
    checkpoint.Checkpointer.mark_complete = full
else:  # rank 1 only, inside save_state (its RNG file)
    from accelerate import Accelerator
    real = Accelerator.save_state
    def full(self, *a, **k):
        if self.process_index == 1:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", a[0])
        return real(self, *a, **k)
    Accelerator.save_state = full
loop.main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("fail_in", ["mark_complete", "save_state_rank1"])
def test_checkpoint_save_failing_stops_both_ranks_with_one_line(tiny_model, tiny_data, tmp_path, fail_in):
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK.format(root=ROOT))
    out = str(tmp_path / "run")
    cmd = launcher(2) + [str(script)] + small(tiny_model, tiny_data, out, checkpointing_steps=2)
    proc = subprocess.run(cmd, cwd=ROOT, env=env(ACCELERATE_USE_CPU="true", FAIL_IN=fail_in), capture_output=True,
                          text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not write checkpoint" in errors[0] and "step_2" in errors[0], proc.stderr[-4000:]
    assert "gloo" not in proc.stderr and "Connection closed" not in proc.stderr, proc.stderr[-4000:]
    # no worker traceback (torchrun prints its own ChildFailedError, and may SIGTERM a rank already leaving)
    assert not re.search(r'File ".*(/loop/|/accelerate/)', proc.stderr), proc.stderr[-4000:]
    assert re.search(r"Root Cause.*?exitcode\s*:\s*2\b", proc.stderr, re.S), proc.stderr[-4000:]
    assert not steps(out) and not [n for n in os.listdir(os.path.join(out, "checkpoints")) if n.startswith(".tmp-")]


RANK1_ERROR = """
import sys
sys.path.insert(0, {root!r})
import loop


class Teacher(loop.Loop):
    def on_train_start(self):
        if self.accelerator.process_index == 1:  # a variant's own check, which one process fails alone
            raise loop.UserError("teacher checkpoint /data/teacher.pt is unreadable; pass --teacher PATH.")


loop.main(loop_cls=Teacher)
"""


@pytest.mark.slow  # two processes through torchrun: ~25 s
def test_an_error_one_rank_raises_alone_reaches_the_user(tiny_model, tiny_data, tmp_path):
    """A UserError raised on process 1 alone was printed by no process (the first process of each node prints),
    and torchrun's failure table pointed at the elastic docs: 86 lines of output without the sentence (audit61).
    The rank leaves it in torchrun's reply file: the table says it."""
    script = tmp_path / "teacher.py"
    script.write_text(RANK1_ERROR.format(root=ROOT))
    cmd = launcher(2) + [str(script)] + small(tiny_model, tiny_data, str(tmp_path / "run"), num_train_epochs=1)
    proc = subprocess.run(cmd, cwd=ROOT, env=env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    # (rank 1's row: exit code 2, or SIGTERM when torchrun saw rank 0's broken connection first and stopped it)
    assert "traceback : error: teacher checkpoint /data/teacher.pt is unreadable; pass --teacher PATH.\n" \
        in proc.stderr, proc.stderr[-4000:]


PUSH_FAILS = """
import sys
sys.path.insert(0, {root!r})
import loop
from loop import checkpoint, hub


def refused(self):
    raise loop.UserError("could not push best/ to 'me/tiny' (401 Unauthorized); check the token.")


hub.push_problem = lambda cfg: None  # (offline here: a token and the Hub assumed)
checkpoint.Checkpointer.push_to_hub = refused
loop.main()
"""


@pytest.mark.slow  # two processes: ~15 s
def test_a_push_refused_at_the_end_stops_every_rank_with_its_line(tiny_model, tiny_data, tmp_path):
    """The push at the end fails on the main process (it alone pushes): the other ranks, waiting at finish()'s
    barrier, met a closed connection (a gloo traceback, exit 1) under the main process's line (audit61 r3). Every
    rank stops on the main process's error, together: one line, exit 2."""
    script = tmp_path / "push_fails.py"
    script.write_text(PUSH_FAILS.format(root=ROOT))
    args = small(tiny_model, tiny_data, str(tmp_path / "run"), num_train_epochs=1) + [
        "--push_to_hub", "--hub_model_id", "me/tiny"]
    p = run_cli(args, nproc=2, script=str(script), how="fork", check=False)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: could not push best/ to 'me/tiny' (401 Unauthorized); check the token."], p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "gloo" not in p.stderr, p.stderr[-3000:]


# ---------------------------------------------------------------- resuming an older checkpoint
def test_resume_from_older_checkpoint_moves_the_abandoned_timeline_aside(tiny_model, tiny_data, tmp_path):
    """6 steps per epoch, 12 in all, a checkpoint every 2. Killed at 7 (step_2, 4, 6); resumed by hand from
    step_2 and preempted at 3; the requeue's `latest` must continue from step_3, not the abandoned step_6
    (whose log records, steps 4 to 6 and the epoch-1 evaluation, would be missing)."""
    out = str(tmp_path / "run")
    args = small(tiny_model, tiny_data, out, checkpointing_steps=2)
    assert cli(args, script=FAULTS, LOOP_TEST_CRASH_AT_STEP=7).returncode == -signal.SIGKILL
    assert steps(out) == [2, 4, 6]
    older = os.path.join(out, "checkpoints", "step_2")
    proc = cli(args + ["--resume_from_checkpoint", older], script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=3)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if "aside" in line]
    assert len(said) == 1 and "step_4, step_6" in said[0], proc.stderr[-3000:]
    assert steps(out) == [2, 3]
    assert sorted(n for n in os.listdir(os.path.join(out, "checkpoints")) if n.startswith(".")) == \
        [".abandoned-step_4", ".abandoned-step_6"]
    proc = cli(args + ["--resume_from_checkpoint", "latest"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from " + os.path.join(out, "checkpoints", "step_3") in proc.stdout
    assert "lost records" not in proc.stderr + proc.stdout
    assert [r["step"] for r in train_logs(out)] == list(range(1, 13))
    assert [(e["step"], e["epoch"]) for e in evals(out)] == [(6, 1), (12, 2)]

    # a log shorter than its checkpoint says (records lost), ending in a cut-off line (a half-copied folder): one
    # warning, and the fragment dropped (the next record was glued to it: no JSON-lines reader took the file)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        head = f.readlines()[:3]
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        f.writelines(head + ['{"step": 4, "epoch": 0.66, "los'])
    proc = cli(args + ["--resume_from_checkpoint", "latest"])  # the finished run: nothing left to train
    assert proc.returncode == 0, proc.stderr[-3000:]
    lost = [line for line in proc.stderr.splitlines() if "lost records" in line]
    assert len(lost) == 1 and "holds 3 whole lines" in lost[0], proc.stderr[-3000:]
    with open(os.path.join(out, "metrics.jsonl")) as f:
        text = f.read()
    assert text.startswith("".join(head)) and text.endswith("\n")
    assert all(json.loads(line) for line in text.splitlines())


@pytest.mark.slow  # more than one run
def test_callback_state_follows_its_class_not_its_position(tiny_model, tiny_data, tmp_path):
    """Early stopping's state in a checkpoint written by a run with another callback before it (the fault
    harness's), resumed by the plain CLI with early stopping alone: the resumed run stops where the
    uninterrupted one did (was: its state was stored under position 1 and looked for under 0, so it started
    afresh and trained 3 more steps)."""
    flags = dict(eval_steps=3, checkpointing_steps=3, early_stopping_patience=1, learning_rate=1e-12)
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    assert cli(small(tiny_model, tiny_data, whole, **flags), script=FAULTS).returncode == 0
    stopped = [e["step"] for e in evals(whole)]
    assert stopped == [3, 6], stopped  # (the loss cannot fall: the second evaluation stops the run)
    proc = cli(small(tiny_model, tiny_data, cut, **flags), script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=4)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    proc = cli(small(tiny_model, tiny_data, cut, resume_from_checkpoint="latest", **flags))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [e["step"] for e in evals(cut)] == stopped and "stopping: early stopping" in proc.stdout
    assert "holds no state of callback" not in proc.stderr


@pytest.mark.slow  # more than one run
def test_rotation_keeps_the_resumed_checkpoint_named_through_a_link(tiny_model, tiny_data, tmp_path):
    """--output_dir through a symbolic link (a cluster's scratch), the resume path written with the real
    folder, --save_total_limit 1: the checkpoint the run resumed from is its own and kept (was: compared by
    spelling, it counted as another run's and was deleted)."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    args = small(tiny_model, tiny_data, str(link), checkpointing_steps=2)
    proc = cli(args, script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=3)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    resumed = str(real / "checkpoints" / "step_3")
    proc = cli(args + ["--resume_from_checkpoint", resumed, "--save_total_limit", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert steps(str(real)) == [3, 12]


# ---------------------------------------------------------------- stop during setup after an outside resume
def test_stop_during_setup_after_resuming_an_outside_checkpoint_saves_one_here(tiny_model, tiny_data, tmp_path):
    from loop import Loop, parse_args
    from loop.errors import Preempted
    from loop.preemption import STOP_SIGNALS

    class SignalWhileTokenizing(Loop):
        signal_now = False

        def build_datasets(self):
            if SignalWhileTokenizing.signal_now:
                SignalWhileTokenizing.signal_now = False
                os.kill(os.getpid(), signal.SIGTERM)
            return super().build_datasets()

    common = dict(max_train_samples=32, max_eval_samples=16, num_train_epochs=2, logging_steps=1,
                  checkpointing_steps=2)
    first, out, outside = str(tmp_path / "first"), str(tmp_path / "run"), str(tmp_path / "copies" / "step_2")
    SignalWhileTokenizing(parse_args(tiny_args(tiny_model, tiny_data, first, **common))).fit()
    shutil.copytree(os.path.join(first, "checkpoints", "step_2"), outside)
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    SignalWhileTokenizing.signal_now = True
    try:
        with pytest.raises(Preempted) as e:
            SignalWhileTokenizing(parse_args(tiny_args(tiny_model, tiny_data, out, resume_from_checkpoint=outside,
                                                       **common))).fit()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    here = os.path.join(out, "checkpoints", "step_2")
    assert e.value.checkpoint == here and checkpoint_folders.is_complete(here) and checkpoint_folders.verify_checkpoint(here) is None
    resumed = SignalWhileTokenizing(parse_args(tiny_args(tiny_model, tiny_data, out, resume_from_checkpoint="latest",
                                                         **common)))
    resumed.fit()
    assert resumed.resumed_from == here and steps(out) == [2, 4]


# ---------------------------------------------------------------- audit: what --resume_from_checkpoint points at
def test_resume_path_that_is_no_checkpoint_names_what_it_is_and_what_to_pass(tmp_path):
    """best/, a run folder or its checkpoints/ folder were refused as 'incomplete (the save was interrupted)'."""
    run, here = tmp_path / "a", str(tmp_path / "b")
    best = run / "best"
    best.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "best_metrics.json"):
        (best / name).write_text("{}")
    for step in (10, 20):
        d = run / "checkpoints" / f"step_{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"weights")
        storage.write_json(str(d / ckpt.STATE_FILE), {"state": {"global_step": step}, "files": ckpt.checksum_tree(str(d))})
    (run / "checkpoints" / "step_30").mkdir()  # cut short: no loop_state.json
    newest = str(run / "checkpoints" / "step_20")

    def refused(arg, output_dir=here):
        with pytest.raises(UserError) as e:
            checkpoint_folders.resolve_resume(str(arg), output_dir)
        assert "interrupted" not in str(e.value) or os.path.basename(str(arg)).startswith("step_"), e.value
        return str(e.value)

    msg = refused(best)
    assert "a run's best/ model" in msg and f"--model_name_or_path '{best}'" in msg and newest in msg, msg
    plain = tmp_path / "bert"  # any save_pretrained folder
    shutil.copytree(best, plain)
    os.remove(plain / "best_metrics.json")
    msg = refused(plain)
    assert "a model folder" in msg and f"--model_name_or_path '{plain}'" in msg, msg
    msg = refused(run)  # a run folder: latest with that output_dir, or its newest checkpoint, named
    assert "a run folder" in msg and f"--output_dir '{run}'" in msg and newest in msg, msg
    msg = refused(run, output_dir=str(run))  # its own output_dir: plain `latest`
    assert "pass --resume_from_checkpoint latest," in msg and newest in msg, msg
    msg = refused(run / "checkpoints")
    assert "the checkpoints/ folder of a run" in msg and newest in msg and "step_30" not in msg, msg
    msg = refused(run / "checkpoints" / "step_30")  # really cut short: the old message, still true
    assert "incomplete" in msg and "interrupted" in msg, msg
    other = tmp_path / "notes"
    other.mkdir()
    msg = refused(other)
    assert "is not a checkpoint" in msg and "interrupted" not in msg, msg
    shutil.rmtree(run / "checkpoints")
    msg = refused(run)
    assert "holds no complete checkpoint" in msg and f"--model_name_or_path '{best}'" in msg, msg


# ---------------------------------------------------------------- audit: the same files with other labels
def flip_labels(path):
    rows = read_jsonl(path)
    other = {"NEGATIVE": "POSITIVE", "POSITIVE": "NEGATIVE"}
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(dict(r, label=other[r["label"]])) + "\n")


def test_resume_on_the_same_files_with_other_labels_is_refused(tiny_model, tmp_path):
    """Every label flipped: the same counts, label names and token lengths, so nothing was noticed."""
    from loop import Loop, parse_args

    (tmp_path / "data").mkdir()
    data = str(write_data(tmp_path / "data", 64, 32))
    out = str(tmp_path / "run")
    args = small(tiny_model, data, out, max_train_samples=32, max_eval_samples=16, num_train_epochs=1,
                 checkpointing_steps="epoch")
    Loop(parse_args(args)).fit()
    resume = args + ["--resume_from_checkpoint", "latest"]
    for name, what in (("train.jsonl", "the training examples' labels changed"),
                       ("validation.jsonl", "the evaluation examples (texts or labels) changed")):
        path = os.path.join(data, name)
        kept = open(path).read()
        flip_labels(path)
        with pytest.raises(UserError, match="made on other data") as e:
            Loop(parse_args(resume)).fit()
        assert what in str(e.value) and str(e.value).count("changed") == 1, e.value
        with open(path, "w") as f:
            f.write(kept)
    # a class added: refused, without first the warning that the model's config changed and 'the run goes on with
    # it' (its labels changed with the data: audit59 b6)
    path = os.path.join(data, "train.jsonl")
    kept, rows = open(path).read(), read_jsonl(path)
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps(dict(r, label="NEUTRAL") if i % 3 == 0 else r) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match="made on other data"):
            Loop(parse_args(resume)).fit()
    assert not [str(w.message) for w in caught if "goes on with it" in str(w.message)]
    with open(path, "w") as f:
        f.write(kept)
    resumed = Loop(parse_args(resume))  # the same data again: the signature is stable across processes' runs
    resumed.fit()
    assert resumed.resumed_from == os.path.join(out, "checkpoints", "step_2")


@pytest.mark.slow  # a run and two resumes: ~8-15 s
def test_a_resume_whose_variant_builds_other_group_rates_says_the_checkpoints_are_kept(tiny_model, tiny_data,
                                                                                         tmp_path):
    """A variant's per-group learning rates edited in its code between the run and its resume: the checkpoint's
    rates came back (optimizer and scheduler state), the edit did nothing, without a word (audit59 e4). Warned,
    naming the group; the same code resumes silently."""
    from loop import Loop, parse_args

    class Heads(Loop):
        head_scale = 2.0

        def param_groups(self, model):
            groups = super().param_groups(model)
            return [dict(g, lr=self.cfg.learning_rate * (self.head_scale if i == 0 else 1.0))
                    for i, g in enumerate(groups)]

    out = str(tmp_path / "run")
    args = small(tiny_model, tiny_data, out, num_train_epochs=1, checkpointing_steps=3)
    Heads(parse_args(args)).fit()
    resume = args + ["--resume_from_checkpoint", os.path.join(out, "checkpoints", "step_3"), "--overwrite_output_dir",
                     "false"]

    def said(loop_cls):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop_cls(parse_args(resume)).fit()
        return [str(w.message) for w in caught if "parameter groups were built with other settings" in str(w.message)]

    assert said(Heads) == []

    class Edited(Heads):
        head_scale = 3.0

    Edited.__name__, Edited.__qualname__ = Heads.__name__, Heads.__qualname__  # the same variant, its code edited
    lines = said(Edited)
    assert len(lines) == 1 and "group 0: learning rate 0.003 built, 0.002 in the checkpoint" in lines[0], lines

    class Decayed(Heads):  # the same rates, another weight decay for the first group
        def param_groups(self, model):
            return [dict(g, weight_decay=0.5) if i == 0 else g for i, g in enumerate(super().param_groups(model))]

    Decayed.__name__, Decayed.__qualname__ = Heads.__name__, Heads.__qualname__
    lines = said(Decayed)
    assert len(lines) == 1 and "group 0: weight decay 0.5 built, " in lines[0], lines
    assert "learning rate" not in lines[0], lines


def recorded(**old):
    """A checkpoint's loop_state.json record of a run with the default options but `old`, one process."""
    config = resume_checks.jsonable(resume_checks.option_defaults())
    config.update(old)
    return {"config": config, "classes": {"model": "BertForSequenceClassification"}, "num_processes": 1}


def differences(saved, classes=None, num_processes=1, **new):
    cfg = resume_checks.jsonable(resume_checks.option_defaults())
    cfg.update(new)
    return resume_checks.config_differences(saved, cfg, classes or {"model": "BertForSequenceClassification"},
                                            num_processes)


def test_config_differences_name_each_changed_option_and_nothing_else():
    """The resume refusal's phrases, one per difference (mutation audit62 m): a changed option with both values
    (a left-out one 'not given'), a class, the number of processes, an option the checkpoint's loop did not have
    (compared with its default), one this loop no longer has; options that may change, --data_seed spelled as
    --seed, LoRA options without LoRA and --dataset_config_name with files are no difference."""
    same = recorded()
    assert differences(same) == ([], [])
    assert differences(same, learning_rate=1e-4) == (["--learning_rate 2e-05 → 0.0001"], [])
    assert differences(recorded(max_steps=10)) == (["--max_steps 10 → not given"], [])
    assert differences(same, logging_steps=1, save_total_limit=1, output_dir="elsewhere") == ([], [])
    assert differences(same, classes={"model": "RobertaForSequenceClassification"}) == \
        (["model class BertForSequenceClassification → RobertaForSequenceClassification"], [])
    both = dict(same, classes={"model": "BertForSequenceClassification", "config": "BertConfig"})
    assert differences(both, classes={"model": "RobertaForSequenceClassification", "config": "BertConfig"}) == \
        (["model class BertForSequenceClassification → RobertaForSequenceClassification"], [])  # (config: the same)
    assert differences(same, num_processes=2) == (["number of processes (1 then, 2 now)"], [])
    assert differences(dict(same, num_processes=None), num_processes=2) == ([], [])  # (not recorded: not compared)
    older = recorded()
    del older["config"]["warmup_ratio"], older["config"]["seed"]
    assert differences(older) == ([], [])  # options newer than that run's loop: their defaults, as it had
    assert differences(older, seed=7) == (["--seed (new) 7"], [])
    assert differences(recorded(an_old_option=3)) == (["--an_old_option 3 → (gone)"], [])
    assert differences(same, data_seed=42) == ([], [])  # the seed's draws, spelled out
    assert differences(same, data_seed=7) == (["--data_seed not given → 7"], [])
    assert differences(recorded(lora_alpha=32), lora_alpha=16) == ([], [])  # no LoRA in either run: did nothing
    assert differences(recorded(lora_r=8, lora_alpha=32), lora_r=8, lora_alpha=16) == (["--lora_alpha 32 → 16"], [])
    # the same adapters however spelled (audit64 p7): alpha left out is 2 x r, targets left out are all-linear, in
    # any order
    assert differences(recorded(lora_r=4), lora_r=4, lora_alpha=8, lora_target_modules="all-linear") == ([], [])
    assert differences(recorded(lora_r=4, lora_target_modules="q_proj,v_proj"), lora_r=4,
                       lora_target_modules="v_proj, q_proj") == ([], [])
    assert differences(recorded(lora_r=4), lora_r=4, lora_alpha=16, lora_target_modules="q_proj") == (
        ["--lora_alpha not given → 16", "--lora_target_modules not given → 'q_proj'"], [])
    assert differences(recorded(lora_r=4), lora_r=8, lora_alpha=8) == (
        ["--lora_r 4 → 8", "--lora_alpha not given → 8"], [])  # (8 is 2 x 4, not 2 x 8)
    assert differences(recorded(train_file="a.csv", dataset_config_name="x"), train_file="a.csv") == ([], [])
    # --warmup_steps 0 is no warmup (the loop of 2026-12-01 recorded it as 0; review rev F3)
    assert differences(recorded(warmup_steps=0)) == differences(recorded(warmup_steps=0.0)) == ([], [])
    assert differences(recorded(warmup_steps=0), warmup_steps=5) == (["--warmup_steps 0 → 5"], [])
    # a loop before 2026-11-29 asked for SDPA when left out; another kernel left out is a change
    assert differences(recorded(attn_implementation="sdpa")) == ([], [])
    assert differences(recorded(attn_implementation="eager")) == (["--attn_implementation 'eager' → not given"], [])
    # --trust_remote_code picks a model's own classes only where its config names them (auto_map)
    assert differences(dict(same, model_config={"model_type": "bert"}), trust_remote_code=True) == ([], [])
    assert differences(dict(same, model_config={"auto_map": {"AutoModel": "m.M"}}), trust_remote_code=True) == \
        (["--trust_remote_code False → True"], [])
    assert differences(recorded(dataset_name="glue", dataset_config_name="sst2"), dataset_name="glue",
                       dataset_config_name="cola") == (["--dataset_config_name 'sst2' → 'cola'"], [])


def test_config_differences_of_an_auto_found_batch():
    """--auto_find_batch_size: a resume keeps the batch the checkpoint's run found when this run asks the same
    examples per step; given as flags it is the same batch; another count per step is named (mutation audit62 m)."""
    found = recorded(auto_find_batch_size=True, per_device_train_batch_size=4, gradient_accumulation_steps=4)
    assert differences(found, auto_find_batch_size=True) == ([], [])  # 16 x 1 asked, 4 x 4 found: 16 a step
    assert differences(found, per_device_train_batch_size=4, gradient_accumulation_steps=4) == ([], [])
    assert differences(found, auto_find_batch_size=True, per_device_train_batch_size=32) == \
        (["examples per step and process 16 then (4 x 4, found by --auto_find_batch_size), 32 now"], [])
    assert differences(recorded(), auto_find_batch_size=True) == ([], [])  # added on resume: the batch stays


def test_the_same_files_by_another_path_are_renamed_not_changed(tmp_path, monkeypatch):
    """A path option naming the checkpoint's file from another folder is the same run ('renamed'); another file
    is a difference (mutation audit62 m)."""
    (tmp_path / "data").mkdir()
    for name in ("train.csv", "other.csv"):
        (tmp_path / "data" / name).write_text("text,label\na,0\n")
    monkeypatch.chdir(tmp_path / "data")
    saved = dict(recorded(train_file="data/train.csv"), cwd=str(tmp_path))
    assert differences(saved, train_file="train.csv") == ([], ["--train_file"])
    assert differences(saved, train_file=str(tmp_path / "data" / "train.csv")) == ([], ["--train_file"])
    assert differences(saved, train_file="other.csv") == (["--train_file 'data/train.csv' → 'other.csv'"], [])
    os.symlink(tmp_path / "data", tmp_path / "scratch")  # the same folder through a link
    assert differences(saved, train_file=str(tmp_path / "scratch" / "train.csv")) == ([], ["--train_file"])
    assert not resume_checks.same_files("learning_rate", "train.csv", "train.csv", str(tmp_path / "data"))
    # names of nothing here (Hub models) are compared as text: another one is another model
    assert differences(recorded(model_name_or_path="org/model-a"), model_name_or_path="org/model-b") == \
        (["--model_name_or_path 'org/model-a' → 'org/model-b'"], [])


def test_data_differences_name_what_changed():
    """The data half of the resume refusal (mutation audit62 m): a count with both values, a hash as 'changed',
    an evaluation file's examples compared as a set (its labels' order hash is for older checkpoints), an extra
    evaluation set under its name, and keys a checkpoint lacks left uncompared."""
    now = {"train_examples": 100, "eval_examples": 20, "labels": ["neg", "pos"], "train_lengths_sha1": "l",
           "train_tokens_sha1": "t", "truncation_side": "right", "train_labels_sha1": "a", "eval_labels_sha1": "e",
           "test_examples": 0, "test_labels_sha1": None, "eval_examples_sha1": "x", "test_examples_sha1": None,
           "extra_eval": {"ood": [10, "o"]}}
    assert resume_checks.data_differences(dict(now), now) == []
    assert resume_checks.data_differences(dict(now, train_examples=90), now) == \
        ["training examples: 90 then, 100 now"]
    assert resume_checks.data_differences(dict(now, train_labels_sha1="b"), now) == \
        ["the training examples' labels changed"]
    assert resume_checks.data_differences(dict(now, eval_labels_sha1="shuffled"), now) == []  # same set
    assert resume_checks.data_differences(dict(now, eval_examples_sha1="y"), now) == \
        ["the evaluation examples (texts or labels) changed"]
    old = dict(now, eval_labels_sha1="other")
    del old["eval_examples_sha1"]  # a checkpoint from before the set was recorded: labels in order
    assert resume_checks.data_differences(old, now) == ["the evaluation examples' labels changed"]
    assert resume_checks.data_differences(dict(now, eval_examples=19, eval_examples_sha1="y"), now) == \
        ["evaluation examples: 19 then, 20 now"]
    assert resume_checks.data_differences({"train_examples": 100}, now) == []
    # a labels hash the checkpoint recorded as None (a variant's ragged labels went unhashed then) is not compared
    assert resume_checks.data_differences(dict(now, train_labels_sha1=None), now) == []
    assert resume_checks.data_differences(dict(now, extra_eval={"ood": [9, "o"]}), now) == \
        ["evaluation set 'ood': 9 examples then, 10 now"]
    assert resume_checks.data_differences(dict(now, extra_eval={"ood": [10, "p"]}), now) == \
        ["evaluation set 'ood': other texts or labels"]
    assert resume_checks.data_differences(dict(now, extra_eval={"gone": [3, "g"]}), now) == []
    assert resume_checks.data_differences(dict(now, truncation_side="left", train_tokens_sha1="u",
                                               eval_examples_sha1="y", extra_eval={"ood": [10, "p"]}), now) == \
        ["the training texts' tokens (other texts, tokenizer or --truncation_side) changed",
         "--truncation_side (as the tokenizer cut): left then, right now"]


def test_label_hash_covers_every_label_kind():
    import datasets

    def h(labels, feature):
        return resume_checks.labels_sha1(datasets.Dataset.from_dict({"labels": labels}).cast_column("labels", feature))

    ids = datasets.ClassLabel(names=["a", "b"])
    assert h([0, 1, 1], ids) == h([0, 1, 1], ids) != h([1, 0, 1], ids)
    rows = datasets.Sequence(datasets.Value("float32"), length=2)
    assert h([[0.0, 1.0], [1.0, 1.0]], rows) != h([[1.0, 0.0], [1.0, 1.0]], rows)
    assert h([0.5, 2.0], datasets.Value("float32")) != h([0.5, 2.5], datasets.Value("float32"))
    assert resume_checks.labels_sha1(datasets.Dataset.from_dict({"text": ["x"]})) is None
    # a variant's ragged rows (variable-length lists, which numpy makes no array of) are hashed too, in order
    ragged = datasets.Sequence(datasets.Value("int64"))
    assert h([[1, 2], [3], [4, 5, 6]], ragged) == h([[1, 2], [3], [4, 5, 6]], ragged) is not None
    assert h([[1, 2], [3], [4, 5, 6]], ragged) not in (h([[1, 2], [3], [4, 5, 7]], ragged),
                                                       h([[3], [1, 2], [4, 5, 6]], ragged))
    picked = datasets.Dataset.from_dict({"labels": [0, 1, 1, 0]}).cast_column("labels", ids).select([2, 0])
    assert resume_checks.labels_sha1(picked) == h([1, 0], ids)  # a selection hashes what it holds, in its order


# ---------------------------------------------------------------- audit: another run's checkpoint into a new output_dir
def best_step(folder):
    with open(os.path.join(folder, "best_metrics.json")) as f:
        return json.load(f)["step"]


class FirstIsBest:
    """A loop whose first evaluation stays the best one (no later evaluation beats it)."""

    def improved(self, value, best):
        return best is None


def test_another_runs_best_is_copied_by_its_checksums_never_through_a_link(tmp_path):
    """copy_best copied another run's best/ with copytree, following links: a link to a secret (or to /dev/zero)
    came along into this run's best/, unlisted, and --push_to_hub would upload it (audit62 s3). Now: a link is
    refused, only the files checksums.json names come (with it), and a name outside the folder is refused."""
    source = tmp_path / "theirs"
    (source / "adapter").mkdir(parents=True)
    (source / "model.safetensors").write_bytes(b"weights")
    (source / "adapter" / "adapter_config.json").write_text("{}")
    storage.write_json(str(source / ckpt.BEST_CHECKSUMS), ckpt.checksum_tree(str(source)))
    (source / "notes.txt").write_text("not theirs to give")  # unlisted: stays behind
    ckpt.copy_own_files(str(source), str(tmp_path / "a"))
    assert ckpt.checksum_tree(str(tmp_path / "a")) == ckpt.checksum_tree(str(source), skip=(
        ckpt.STATE_FILE, ckpt.BEST_CHECKSUMS, "notes.txt"))
    assert not (tmp_path / "a" / "notes.txt").exists() and (tmp_path / "a" / ckpt.BEST_CHECKSUMS).is_file()

    (tmp_path / "secret").write_text("an ssh key")
    (source / "extra.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(UserError, match=r"holds a symbolic link \('extra.txt'\), which a best/ a loop run wrote never"):
        ckpt.copy_own_files(str(source), str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    (source / "extra.txt").unlink()
    storage.write_json(str(source / ckpt.BEST_CHECKSUMS), {"../secret": "0" * 64})
    with pytest.raises(UserError, match=r"names a file outside that folder \('\.\./secret'\)"):
        ckpt.copy_own_files(str(source), str(tmp_path / "c"))
    assert not (tmp_path / "c" / ".." / "c" / "secret").exists()


def test_resuming_another_runs_checkpoint_brings_its_best_or_starts_best_over(tiny_model, tiny_data, tmp_path,
                                                                              capsys, recwarn):
    """Run A: 6 steps per epoch, best at step 6, checkpoints step_6 and step_12. B resumed A's step_6 into a
    new --output_dir and said 'model in B/best' with no best/ there (and --push_to_hub would push nothing)."""
    from loop import Loop, parse_args

    class Run(FirstIsBest, Loop):
        pass

    def fit(out, **over):
        loop = Run(parse_args(small(tiny_model, tiny_data, out, checkpointing_steps="epoch", **over)))
        loop.fit()
        return loop

    a = str(tmp_path / "a")
    fit(a)
    a_best = os.path.join(a, "best")
    assert best_step(a_best) == 6
    step_6, step_12 = (os.path.join(a, "checkpoints", f"step_{s}") for s in (6, 12))
    capsys.readouterr()

    # A's best/ matches the checkpoint's best and verifies: copied, checksums and all
    b = str(tmp_path / "b")
    fit(b, resume_from_checkpoint=step_6)
    out = capsys.readouterr()
    assert best_step(os.path.join(b, "best")) == 6
    assert ckpt.checksum_tree(os.path.join(b, "best")) == ckpt.checksum_tree(a_best)
    assert "copied the best model so far" in out.err and a_best in out.err, out.err[-2000:]
    # and the record of how it was made beside it, though no evaluation here beat it (helper compat F4)
    with open(os.path.join(b, "training_args.json")) as f:
        assert json.load(f)["options"]["output_dir"] == b
    summary = [line for line in out.out.splitlines() if line.startswith("[loop] best ")]
    assert len(summary) == 1 and "step 6;" in summary[0] and f"model in {os.path.join(b, 'best')}" in summary[0], summary
    # and A's log up to step_6, so B's holds the evaluation its best/ names: the whole story, as A's (was: from step 7)
    assert "copied the first 7 lines of" in out.err
    assert evals(b) == evals(a) and train_logs(b) == train_logs(a) and [r["step"] for r in evals(b)] == [6, 12]

    # A's best/ damaged: not copied; the best tracking starts over, the next evaluation (step 12) writes best/ here
    with open(os.path.join(a_best, "model.safetensors"), "r+b") as f:
        f.seek(-100, os.SEEK_END)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    recwarn.clear()
    c = str(tmp_path / "c")
    fit(c, resume_from_checkpoint=step_6)
    out = capsys.readouterr()
    warned = [str(w.message) for w in recwarn if "best tracking starts over" in str(w.message)]
    assert len(warned) == 1 and "damaged" in warned[0] and "model.safetensors" in warned[0], warned
    assert best_step(os.path.join(c, "best")) == 12
    summary = [line for line in out.out.splitlines() if line.startswith("[loop] best ")]
    assert len(summary) == 1 and "step 12 (since the resume" in summary[0] and os.path.join(c, "best") in summary[0]

    # the finished run's last checkpoint, nothing left to evaluate: no best/ here, and the summary says so
    d = str(tmp_path / "d")
    fit(d, resume_from_checkpoint=step_12)
    out = capsys.readouterr()
    assert not os.path.exists(os.path.join(d, "best"))
    assert "[loop] best " not in out.out and os.path.join(d, "best") not in out.out, out.out[-2000:]
    assert f"no best model in {d}" in out.out, out.out[-2000:]


def test_another_runs_log_that_does_not_hold_the_checkpoints_lines_is_not_copied(tmp_path):
    """Resuming another run's checkpoint copies that run's log up to it (copy_metrics) only where the log holds the
    lines the checkpoint saw, each whole, and none of a later step: a log cut short, one whose last line lacks its
    line end (a torn write) or one of another timeline is not copied, with a warning naming the lines, and the new
    log starts at the resume (audit60 mutants)."""
    a = tmp_path / "a"
    step_2 = a / "checkpoints" / "step_2"
    step_2.mkdir(parents=True)
    lines = [json.dumps(r).encode() + b"\n" for r in ({"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6},
                                                      {"step": 2, "eval_accuracy": 0.5}, {"step": 3, "loss": 0.5})]
    later = json.dumps({"step": 99, "eval_accuracy": 0.5}).encode() + b"\n"
    for name, text in (("whole", b"".join(lines)), ("short", lines[0]), ("torn", b"".join(lines[:3])[:-1]),
                       ("later", b"".join(lines[:2]) + later + lines[3])):
        (a / "metrics.jsonl").write_bytes(text)
        b = tmp_path / name
        b.mkdir()
        warned, said = [], []
        here = SimpleNamespace(metrics_path=str(b / "metrics.jsonl"), _say=said.append,
                               loop=SimpleNamespace(state=SimpleNamespace(global_step=2), warn=warned.append))
        ckpt.Checkpointer.copy_metrics(here, str(step_2), 3)
        if name == "whole":  # the first 3 lines, as they are
            assert (b / "metrics.jsonl").read_bytes() == b"".join(lines[:3]) and not warned, warned
            assert said and "copied the first 3 lines of" in said[0], said
            continue
        assert len(warned) == 1 and "starts at this resume" in warned[0] and "does not hold the 3 lines it had " \
            "logged by then" in warned[0], (name, warned)
        assert not (b / "metrics.jsonl").exists() and not said, name


def test_another_folders_checkpoint_over_a_run_here_is_refused_or_replaces_it(tiny_model, tiny_data, tmp_path):
    """Run A's step_6 resumed into B, which holds a finished run of its own: B's log was cut to A's line count and
    A's records followed (two runs spliced, no word said), and B's best/ kept when it happened to name the same step
    and score. Refused now; with --overwrite_output_dir B's run goes (log, checkpoints, event files; best/ is A's,
    copied) and the log holds A's, up to step_6 copied as best/ is, then its continuation. A run without --report_to tensorboard over one with it leaves
    no old event files."""
    from loop import Loop, parse_args

    class Run(FirstIsBest, Loop):
        pass

    def fit(out, **over):
        Run(parse_args(small(tiny_model, tiny_data, out, checkpointing_steps="epoch", **over))).fit()

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    fit(a)
    fit(b, learning_rate=5e-3, report_to="tensorboard")
    step_6 = os.path.join(a, "checkpoints", "step_6")
    before = open(os.path.join(b, "metrics.jsonl")).read()
    with pytest.raises(UserError, match=r"--output_dir '.*b' already holds a run .* and checkpoint '.*step_6' is another "
                                        r"folder's: resuming it here would mix the two runs' records; pass "
                                        r"--overwrite_output_dir to replace that run"):
        fit(b, resume_from_checkpoint=step_6)
    assert open(os.path.join(b, "metrics.jsonl")).read() == before  # refused before touching anything

    fit(b, resume_from_checkpoint=step_6, overwrite_output_dir="true")
    # A's log up to step_6 (copied, as its best/) and its continuation, nothing of B's old run
    assert [r["step"] for r in train_logs(b)] == list(range(1, 13))
    assert train_logs(b) == train_logs(a) and evals(b) == evals(a)
    assert ckpt.checksum_tree(os.path.join(b, "best")) == ckpt.checksum_tree(os.path.join(a, "best"))  # A's, copied
    assert not glob.glob(os.path.join(b, "loop", "**", "events.out.tfevents.*"), recursive=True)  # B's old events
    assert steps(b) == [12]


def test_a_new_run_removes_only_an_earlier_runs_own_files(tiny_model, tiny_data, tmp_path):
    """A run replacing an earlier one (here: --eval_only's results alone) removed checkpoints/ and loop/ whole,
    whatever they held: a user's other model, or this package itself under --output_dir . at the repository's root
    (audit38 F1). Now only what a run of loop writes there goes (step_N folders, TensorBoard's files), the rest
    stays and is named."""
    from loop import Loop, parse_args

    out = tmp_path / "out"
    mine = {out / "checkpoints" / "important.bin": "my other model", out / "loop" / "notes.txt": "notes",
            out / "loop" / "sub" / "x.py": "code", out / "loop" / "1.5" / "keep.txt": "mine too"}
    theirs = [out / "eval_results.json", out / "loop" / "events.out.tfevents.1.vm.2.0",
              out / "loop" / "1796.25" / "hparams.yml", out / "loop" / "1796.5" / "events.out.tfevents.1.vm.2.1",
              out / "checkpoints" / "step_3" / "model.safetensors", out / "checkpoints" / ".tmp-step_4" / "x"]
    for path, text in [*mine.items(), *((p, "{}") for p in theirs)]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with pytest.warns(UserWarning, match=r"kept .*important.bin.*notes.txt.* in --output_dir '.*out': not files of a "
                                         r"run of loop, so the earlier run's removal left them"):
        Loop(parse_args(small(tiny_model, tiny_data, str(out), max_steps=2))).fit()
    assert {p: p.read_text() for p in mine} == mine
    assert not [p for p in theirs if p.exists()] and not (out / "loop" / "1796.25").exists()
    # a finished run replaced with --overwrite_output_dir: its checkpoints go, the user's file stays
    Loop(parse_args(small(tiny_model, tiny_data, str(out), max_steps=2, checkpointing_steps=1,
                          overwrite_output_dir="true"))).fit()
    assert steps(str(out)) == [1, 2]
    Loop(parse_args(small(tiny_model, tiny_data, str(out), max_steps=1, overwrite_output_dir="true"))).fit()
    assert steps(str(out)) == [] and {p: p.read_text() for p in mine} == mine


def test_summary_never_names_a_best_folder_that_is_not_there(tiny_model, tiny_data, tmp_path, capsys):
    from types import SimpleNamespace

    from loop.logs import RunLog

    c = checker(tiny_model, tiny_data, str(tmp_path / "out"))
    state = SimpleNamespace(best_metric=0.75, best_epoch=1, best_step=6)
    log = RunLog(c.cfg, SimpleNamespace(is_main_process=True, is_local_main_process=True, num_processes=1))
    log.summary(SimpleNamespace(state=state, checkpointer=c))
    line = capsys.readouterr().out.splitlines()[0]
    assert "step 6; no model of it in" in line and "does not exist" in line and "model in" not in line, line
    with pytest.raises(UserError, match="--push_to_hub: there is no .* to push .* nothing was pushed"):
        c.push_to_hub()  # offline: the old code tried the Hub and said "the local copy in best/ is complete"
    os.makedirs(c.best_dir)
    storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), {"epoch": 1, "step": 6, "eval_accuracy": 0.75})
    log.summary(SimpleNamespace(state=state, checkpointer=c))
    assert f"step 6; model in {c.best_dir}" in capsys.readouterr().out
    state.best_step = 12  # best/ holds another evaluation's model: not named as this one's
    log.summary(SimpleNamespace(state=state, checkpointer=c))
    line = capsys.readouterr().out.splitlines()[0]
    assert "holds another evaluation's model" in line and "model in" not in line, line


def test_a_rerun_of_a_finished_run_resumes_nothing(tiny_model, tiny_data, tmp_path):
    """12 steps, a checkpoint every 5: a re-run with `auto` (a SLURM script submitted again, a sweep filling in
    failed runs) resumed step_10 and trained steps 11-12 again, rewriting the log's end and best/ (on a
    GPU not bit for bit). A finished run records its finish: with the same options there is nothing to resume."""
    out = str(tmp_path / "run")
    args = small(tiny_model, tiny_data, out, checkpointing_steps=5)
    assert cli(args).returncode == 0
    assert steps(out) == [5, 10]
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        log = f.read()
    best = os.stat(os.path.join(out, "best", "model.safetensors")).st_mtime_ns
    # (logging less often, another checkpoint interval: the same run)
    proc = cli(args + ["--resume_from_checkpoint", "auto", "--logging_steps", "3", "--checkpointing_steps", "4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"the run in '{out}' finished at step 12" in proc.stdout and "nothing to resume" in proc.stdout
    assert "resumed from" not in proc.stdout
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        assert f.read() == log
    assert os.stat(os.path.join(out, "best", "model.safetensors")).st_mtime_ns == best
    assert not os.path.exists(os.path.join(out, output_lock.LOCK_FILE))
    # a push the finished run did not make is no "same run": asked for, it is not skipped quietly (offline here:
    # refused at the start, as an impossible push is)
    proc = cli(args + ["--resume_from_checkpoint", "auto", "--push_to_hub", "--hub_model_id", "someone/model"])
    assert proc.returncode == 2 and "nothing to resume" not in proc.stdout and "--push_to_hub" in proc.stderr
    # other options (another seed here) are another run: the resume decides (refused: the seed changed)
    proc = cli(args + ["--resume_from_checkpoint", "auto", "--seed", "7"])
    assert proc.returncode == 2 and "nothing to resume" not in proc.stdout and "seed" in proc.stderr
    # `latest` asks for the last checkpoint by name: resumed, as before
    proc = cli(args + ["--resume_from_checkpoint", "latest"])
    assert proc.returncode == 0 and "resumed from " + os.path.join(out, "checkpoints", "step_10") in proc.stdout


def test_the_same_files_named_by_another_path_are_the_same_run(tiny_model, tiny_data, tmp_path, monkeypatch, capsys):
    """audit42 F2: a run started from its project folder with relative paths, requeued by a job script that names
    them absolute or `cd`s elsewhere, was refused (exit 2: `--train_file 'data/train.jsonl' → '/…/data/train.jsonl'`),
    so a requeue-on-75 script stopped for good. A path that resolves (against the working folder the checkpoint
    records) to the same file or folder is the same option; another file, even a copy, is still a change; a Hub
    name is text. A finished run re-run with `auto` under other paths is finished, not trained again."""
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    shutil.copytree(tiny_model, root / "model")
    shutil.copytree(tiny_data, root / "data")
    shutil.copytree(tiny_data, root / "copy")  # another file with the same rows
    os.symlink(root, tmp_path / "link")
    out = str(tmp_path / "out")

    def run_in(folder, model, data, **over):
        monkeypatch.chdir(folder)
        c = checker(model, data, out, **over)
        c.accelerator.mixed_precision = "no"
        return c

    first = run_in(root, "model", "data")
    path = str(tmp_path / "step_6")
    os.makedirs(path)
    record = {"format": ckpt.STATE_FORMAT, "config": first.cfg.to_dict(), "cwd": str(root)}
    with open(os.path.join(path, ckpt.STATE_FILE), "w") as f:
        json.dump(record, f)
    capsys.readouterr()
    for folder, model, data in ((root / "sub", "../model", "../data"), (root / "sub", root / "model", root / "data"),
                                (tmp_path, "link/model", "link/data"), (root, "model", "data")):
        run_in(folder, str(model), str(data)).check_resume_compatible(path)
        said = capsys.readouterr().err
        assert ("--model_name_or_path, --train_file, --validation_file name the files of checkpoint" in said) == \
            (model != "model"), said
        # the same files, not yet the same run: their data may have changed, which the data signature refuses next
        assert ("by another path: the same files\n" in said) == (model != "model") and "the same run" not in said, said
    with pytest.raises(UserError, match=r"different config \(--train_file 'data/train.jsonl' → '../copy/train.jsonl', "
                                        r"--validation_file 'data/validation.jsonl' → '../copy/validation.jsonl'\)"):
        run_in(root / "sub", "../model", "../copy").check_resume_compatible(path)
    # a Hub name then (no such folder where that run started), a folder of that name here now: another model
    shutil.copytree(tiny_model, root / "distilbert-base-uncased")
    record["config"]["model_name_or_path"] = "distilbert-base-uncased"
    with open(os.path.join(path, ckpt.STATE_FILE), "w") as f:
        json.dump({**record, "cwd": str(tmp_path)}, f)
    with pytest.raises(UserError, match=r"different config \(--model_name_or_path 'distilbert-base-uncased' → "
                                        r"'distilbert-base-uncased/'\)"):
        run_in(root, "distilbert-base-uncased/", "data").check_resume_compatible(path)
    # a checkpoint that recorded no working folder (before 2026-12-04): resolved against this one, the best guess
    with open(os.path.join(path, ckpt.STATE_FILE), "w") as f:
        json.dump({"format": ckpt.STATE_FORMAT, "config": first.cfg.to_dict()}, f)
    run_in(root, str(root / "model"), str(root / "data")).check_resume_compatible(path)
    with pytest.raises(UserError, match=r"different config \(--model_name_or_path 'model' → '../model', --train_file"):
        run_in(root / "sub", "../model", "../data").check_resume_compatible(path)

    # the finish record: the same run under other paths has nothing to resume; on a copy of the data it resumes
    os.makedirs(out)
    with open(os.path.join(out, ckpt.FINISHED_FILE), "w") as f:
        json.dump({"step": 12, "finished": "2026-12-04T00:00:00+0000", "options": ckpt.finished_options(first.cfg),
                   "cwd": str(root)}, f)
    auto = {"resume_from_checkpoint": "auto"}
    assert "nothing to resume" in run_in(root / "sub", "../model", "../data", **auto).finished_here()
    assert "nothing to resume" in run_in(tmp_path, "link/model", "link/data", **auto).finished_here()
    assert run_in(root / "sub", "../model", "../copy", **auto).finished_here() is None


def test_a_resume_says_when_the_models_config_changed(tiny_model, tiny_data, tmp_path):
    """The model folder's config.json edited between a preemption and its resume (dropout 0.1 -> 0.5): the
    weights come from the checkpoint, the dropout does not, and the run went on without a word."""
    import shutil

    model = str(tmp_path / "model")
    shutil.copytree(tiny_model, model)
    out = str(tmp_path / "run")
    args = small(model, tiny_data, out, checkpointing_steps=3)
    proc = cli(args, script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=4)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump({**config, "dropout": 0.5}, f)
    proc = cli(args + ["--resume_from_checkpoint", "latest"], script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=7)
    assert proc.returncode == EXIT_PREEMPTED, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if "the model's config is not the one" in line]
    assert len(said) == 1 and "dropout: 0.1 then, 0.5 now" in said[0], proc.stderr[-3000:]
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump({**config, "dropout": 0.5}, f)  # unchanged since the last checkpoint (step 6, with 0.5): no word
    proc = cli(args + ["--resume_from_checkpoint", "latest"])
    assert proc.returncode == 0 and "the model's config is not" not in proc.stderr, proc.stderr[-3000:]


def test_a_resume_after_the_models_shapes_changed_names_the_config(tiny_model, tiny_data, tmp_path):
    """A layer added to the model folder's config.json after a preemption: every checkpoint holds the old shapes, so
    the advice 'resume from another checkpoint' could not work (audit58 c5); the line names the config's change."""
    import shutil

    model = str(tmp_path / "model")
    shutil.copytree(tiny_model, model)
    out = str(tmp_path / "run")
    args = small(model, tiny_data, out, checkpointing_steps=3)
    assert cli(args, script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=4).returncode == EXIT_PREEMPTED
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump({**config, "n_layers": config["n_layers"] + 1}, f)
    proc = cli(args + ["--resume_from_checkpoint", "latest"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: could not load checkpoint '{os.path.join(out, 'checkpoints', 'step_4')}' ("), line
    assert line.endswith(f": the model's config is not the one the run trained with (n_layers: {config['n_layers']} "
                         f"then, {config['n_layers'] + 1} now); resume with that config (its config.json or "
                         f"--config_overrides as they were), or start a new run in another --output_dir."), line


def test_eval_only_stays_out_of_a_training_runs_folder_and_its_files_go_with_the_best_they_scored(
        tiny_model, tiny_data, tmp_path):
    """--eval_only wrote eval_results.json into a folder a run was training in, and a resumed run's new best/ left
    those scores beside it: they said 0.63 of a best/ that now scored 0.83."""
    import socket

    out = str(tmp_path / "run")
    args = tiny_args(tiny_model, tiny_data, out, checkpointing_steps=10, eval_steps=10, metric="loss")  # 76 steps
    assert cli(args, script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=11).returncode == EXIT_PREEMPTED
    score = ["--eval_only", "--model_name_or_path", os.path.join(out, "best"), "--validation_file",
             os.path.join(tiny_data, "validation.jsonl"), "--max_eval_samples", "16", "--output_dir", out]
    boot, pidns = output_lock.machine_ids()
    lock = os.path.join(out, output_lock.LOCK_FILE)
    with open(lock, "w") as f:  # a live run's lock (our parent: alive, on this machine)
        json.dump({"host": socket.gethostname(), "pid": os.getppid(), "boot": boot, "pidns": pidns}, f)
    proc = cli(score)
    assert proc.returncode == 2 and f"--output_dir '{out}' is in use by a training run (process {os.getppid()}" \
        in proc.stderr, proc.stderr[-2000:]
    inside = os.path.join(out, "best")  # scores inside the run's best/, which its next save swaps out (audit58 e5)
    proc = cli(score[:-1] + [inside])
    assert proc.returncode == 2 and f"--output_dir '{inside}', inside '{os.path.realpath(out)}', is in use by a " \
        f"training run (process {os.getppid()}" in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(os.path.join(inside, "eval_results.json"))
    assert not os.path.exists(os.path.join(out, "eval_results.json"))
    os.remove(lock)
    assert cli(score).returncode == 0 and os.path.isfile(os.path.join(out, "eval_results.json"))
    proc = cli(args + ["--resume_from_checkpoint", "latest"])  # evaluates every 10 steps: a lower loss replaces best/
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removed eval_results.json, eval_predictions.jsonl from" in proc.stdout, proc.stdout[-2000:]
    assert not os.path.exists(os.path.join(out, "eval_results.json"))
    assert not os.path.exists(os.path.join(out, "eval_predictions.jsonl"))


def test_push_to_hub_added_to_a_finished_run_pushes_it_without_training(tiny_model, tiny_data, tmp_path, monkeypatch,
                                                                        capsys):
    """--push_to_hub is no option of the run: added to a finished one (re-submitted with auto), it resumed the last
    checkpoint, trained the steps after it again (rewriting the log's end) and then pushed (audit34). Now best/
    is pushed as it is and the finish record names the push: a re-run after it pushes nothing."""
    from loop import Loop, parse_args

    pushed = []
    monkeypatch.setattr("loop.hub.push_problem", lambda cfg: None)  # (offline here: a token and the Hub assumed)
    monkeypatch.setattr(ckpt.Checkpointer, "push_to_hub", lambda self: pushed.append(self.best_dir))
    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, checkpointing_steps=5)
    Loop(parse_args(args)).fit()
    with open(os.path.join(out, "metrics.jsonl")) as f:
        log = f.read()
    best = os.path.join(out, "best")

    def card():
        assert ckpt.verify_files(best, ckpt.read_checksums(best)) is None  # the card's new checksum recorded
        with open(os.path.join(best, "README.md"), encoding="utf-8") as f:
            text = f.read()
        return [line for line in text.splitlines() if line.startswith(("# ", "- name: ", "classify = "))]

    trained = card()
    assert trained == ["# out", 'classify = pipeline("text-classification", model="path/to/best")  '
                                '# the folder holding this card']
    capsys.readouterr()
    again = args + ["--resume_from_checkpoint", "auto", "--push_to_hub", "--hub_model_id", "me/tiny"]
    Loop(parse_args(again)).fit()
    said = "".join(capsys.readouterr())
    assert pushed == [os.path.join(out, "best")], pushed
    assert "pushed" in said and "'me/tiny'" in said and "finished at step 12" in said and "resumed from" not in said
    with open(os.path.join(out, "metrics.jsonl")) as f:
        assert f.read() == log
    with open(os.path.join(out, ckpt.FINISHED_FILE)) as f:
        assert json.load(f)["options"]["hub_model_id"] == "me/tiny"
    assert not os.path.exists(os.path.join(out, output_lock.LOCK_FILE))
    # the card it pushed names the repository, as one trained with --hub_model_id me/tiny does (audit35 F7)
    assert card() == ["# me/tiny", 'classify = pipeline("text-classification", model="me/tiny")']
    Loop(parse_args(again)).fit()  # pushed already: nothing to do
    assert len(pushed) == 1
    Loop(parse_args(again[:-1] + ["me/other"])).fit()  # another repository: pushed there
    assert len(pushed) == 2
    assert card() == ["# me/other", 'classify = pipeline("text-classification", model="me/other")']


def test_best_is_the_same_bytes_whether_the_data_was_tokenized_or_came_from_the_cache(tiny_model, tiny_data,
                                                                                        tmp_path):
    """best/tokenizer.json held the cut of the tokenizer's last call: max_length's where the run tokenized its data,
    none where the data came from datasets' cache (a rerun, a resume): two runs of the same options, or a resumed
    one and its uninterrupted run, left best/ folders of other bytes, and a reader of tokenizer.json alone cut one
    and not the other (audit59 d1). Now always the run's cut."""
    from tokenizers import Tokenizer

    from loop import Loop, parse_args

    folders = []
    for name in ("first", "again"):  # the second finds the first's tokenized data in the cache
        out = str(tmp_path / name)
        Loop(parse_args(small(tiny_model, tiny_data, out, num_train_epochs=1, max_length=24))).fit()
        folders.append(os.path.join(out, "best"))
    raw = [open(os.path.join(f, "tokenizer.json"), "rb").read() for f in folders]
    assert raw[0] == raw[1]
    assert len(Tokenizer.from_file(os.path.join(folders[1], "tokenizer.json")).encode("good film " * 40).ids) == 24

    class Padded(Loop):  # a variant whose own call pads (as models' trial batch does): no padding in tokenizer.json
        def compute_metrics(self, predictions, references):
            self.tokenizer(["a", "good film"], padding=True)
            return super().compute_metrics(predictions, references)

    out = str(tmp_path / "padded")
    Padded(parse_args(small(tiny_model, tiny_data, out, num_train_epochs=1, max_length=24))).fit()
    assert Tokenizer.from_file(os.path.join(out, "best", "tokenizer.json")).padding is None
    assert open(os.path.join(out, "best", "tokenizer.json"), "rb").read() == raw[0]


@pytest.mark.slow  # a run and three re-runs: ~10 s
def test_a_push_that_fails_at_the_end_is_retried_by_auto_without_training(tiny_model, tiny_data, tmp_path,
                                                                           monkeypatch, capsys):
    """A run whose --push_to_hub failed at its end (the Hub down) wrote no finish record: the same command with
    auto was refused ('holds best/ but no checkpoint'), a retry meant training again (audit59 d3). Now the finish
    is recorded before the push, the push as not made: the error says to re-run with auto, which pushes alone. A
    push of a finished run that fails leaves best/'s card as it was, not naming a repository nothing reached (d4)."""
    import huggingface_hub

    from loop import Loop, UserError, parse_args

    pushed, down = [], [True]

    def upload_folder(repo_id, folder_path):
        if down[0]:
            raise OSError("503 Service Unavailable")
        pushed.append((repo_id, folder_path))

    monkeypatch.setattr("loop.hub.push_problem", lambda cfg: None)  # (offline here: a token and the Hub assumed)
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo, exist_ok: None)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, checkpointing_steps=5, save_total_limit=1) + ["--push_to_hub",
                                                                                          "--hub_model_id", "me/tiny"]
    with pytest.raises(UserError, match=r"could not push best/ to the Hub repository 'me/tiny' \(503 Service "
                                        r"Unavailable\); the local copy in .*best is complete and the run is recorded "
                                        r"finished: the same command with --resume_from_checkpoint auto pushes it "
                                        r"without training again\.$"):
        Loop(parse_args(args)).fit()
    with open(os.path.join(out, "metrics.jsonl")) as f:
        log = f.read()
    best = os.path.join(out, "best")
    before = ckpt.checksum_tree(best)
    with pytest.raises(UserError, match="could not push best/ to the Hub repository 'me/other'"):
        Loop(parse_args(args[:-1] + ["me/other", "--resume_from_checkpoint", "auto"])).fit()  # the Hub still down
    assert ckpt.checksum_tree(best) == before  # the card names no repository nothing reached
    assert ckpt.verify_files(best, ckpt.read_checksums(best)) is None  # and checksums.json is its own again
    real = ckpt.replace_file

    def full(path, data):  # the card cannot be written either: the push's error is still the one said (audit59 r1)
        if path.endswith("README.md"):
            raise OSError(28, "No space left on device")
        return real(path, data)

    with monkeypatch.context() as m:
        m.setattr(ckpt, "replace_file", full)
        with pytest.raises(UserError, match="could not push best/ to the Hub repository 'me/other'"):
            Loop(parse_args(args[:-1] + ["me/other", "--resume_from_checkpoint", "auto"])).fit()
    assert ckpt.checksum_tree(best) == before
    down[0] = False
    capsys.readouterr()
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()
    said = "".join(capsys.readouterr())
    assert pushed == [("me/tiny", best)] and "finished at step 12" in said and "resumed from" not in said, said
    with open(os.path.join(out, "metrics.jsonl")) as f:
        assert f.read() == log  # nothing trained again
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()  # pushed and recorded: nothing to do
    assert len(pushed) == 1
    # a run whose push succeeds at its end is recorded pushed: the same command with auto pushes nothing again
    again = str(tmp_path / "again")
    args = small(tiny_model, tiny_data, again, checkpointing_steps=5, save_total_limit=1, num_train_epochs=1) + [
        "--push_to_hub", "--hub_model_id", "me/again"]
    Loop(parse_args(args)).fit()
    with open(os.path.join(again, ckpt.FINISHED_FILE)) as f:
        assert json.load(f)["options"]["push_to_hub"] is True
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()
    assert pushed[1:] == [("me/again", os.path.join(again, "best"))]


# ---------------------------------------------------------------- checkpoints of older loop versions (audit30)
def _edit_state(path, edit):
    with open(os.path.join(path, ckpt.STATE_FILE)) as f:
        record = json.load(f)
    edit(record)
    with open(os.path.join(path, ckpt.STATE_FILE), "w") as f:
        json.dump(record, f)


@pytest.mark.slow  # 16 s: a run and four re-runs
def test_an_older_loops_finished_run_resubmitted_with_auto_is_finished(tiny_model, tiny_data, tmp_path, capsys):
    """A run of a loop before 2026-12-03 kept no finish record: re-submitted with --resume_from_checkpoint auto
    (the README's requeue script, after an upgrade), it resumed its last checkpoint and trained the steps after
    it again, rewriting its log's end (audit30 F5). Now the log's evaluation of the run's last step says it
    finished; a checkpoint of this version without a finish record (killed after that evaluation) resumes."""
    from loop import Loop, parse_args

    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, checkpointing_steps=5)  # 12 steps: checkpoints at 5 and 10
    Loop(parse_args(args)).fit()
    assert steps(out) == [5, 10]
    with open(os.path.join(out, "metrics.jsonl")) as f:
        log = f.read()
    assert '"step": 12' in log
    today = str(tmp_path / "today")
    shutil.copytree(out, today)
    for folder in (out, today):
        os.remove(os.path.join(folder, ckpt.FINISHED_FILE))
    _edit_state(os.path.join(out, "checkpoints", "step_10"), lambda r: r.pop("format"))  # as an older loop's
    cut, push, stale, extra = (str(tmp_path / n) for n in ("cut", "push", "stale", "extra"))
    for folder in (cut, push, stale, extra):
        shutil.copytree(out, folder)

    def in_place(folder):
        """The run's folder as `folder` holds it: each case in the run's own folder (audit64 m3: under another
        --output_dir the options differ, and each case resumed, or trained again, without reaching the check)."""
        shutil.rmtree(out)
        shutil.copytree(folder, out)
        return args

    capsys.readouterr()
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()
    err = "".join(capsys.readouterr())
    assert f"the run in '{out}' finished at step 12 (its log holds that step's evaluation" in err, err
    assert "resumed from" not in err, err
    with open(os.path.join(out, "metrics.jsonl")) as f:
        assert f.read() == log  # nothing trained again, nothing rewritten
    with open(os.path.join(out, ckpt.FINISHED_FILE)) as f:
        assert json.load(f)["step"] == 12  # recorded: the next re-run stops before any work
    capsys.readouterr()
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()
    assert "finished at step 12 (20" in "".join(capsys.readouterr())  # finished_here's line, with the log's time
    # --push_to_hub added (that run's options had none): pushed, nothing trained
    pushed = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("loop.hub.push_problem", lambda cfg: None)
        mp.setattr(ckpt.Checkpointer, "push_to_hub", lambda self: pushed.append(self.best_dir))
        Loop(parse_args(in_place(push) + ["--resume_from_checkpoint", "auto", "--push_to_hub"])).fit()
    assert pushed == [os.path.join(out, "best")]
    assert "resumed from" not in "".join(capsys.readouterr())
    assert open(os.path.join(out, "metrics.jsonl")).read() == log
    assert os.path.isfile(os.path.join(out, ckpt.FINISHED_FILE))
    # killed while writing best/ after its last evaluation (audit35): best/ is not the log's best evaluation, so
    # the run did not finish: resumed (and best/ written again)
    with open(os.path.join(stale, "best", "best_metrics.json")) as f:
        record = json.load(f)
    storage.write_json(os.path.join(stale, "best", "best_metrics.json"), {**record, "step": -1})
    storage.write_json(os.path.join(stale, "best", ckpt.BEST_CHECKSUMS), ckpt.checksum_tree(os.path.join(stale, "best")))
    capsys.readouterr()
    Loop(parse_args(in_place(stale) + ["--resume_from_checkpoint", "auto"])).fit()
    assert "resumed from" in "".join(capsys.readouterr())
    # with another evaluation set than that run had: another ending, resumed (it is evaluated at the next step)
    capsys.readouterr()
    Loop(parse_args(in_place(extra) + ["--resume_from_checkpoint", "auto", "--extra_eval_files",
                                        "again=" + os.path.join(tiny_data, "validation.jsonl")])).fit()
    assert "resumed from" in "".join(capsys.readouterr())
    # an older loop's run killed before its last evaluation: resumed
    with open(os.path.join(cut, "metrics.jsonl"), "w") as f:
        f.write("".join(line for line in log.splitlines(True) if not ('"step": 12' in line and "eval_" in line)))
    capsys.readouterr()
    Loop(parse_args(in_place(cut) + ["--resume_from_checkpoint", "auto"])).fit()
    assert "resumed from" in "".join(capsys.readouterr())
    assert '"step": 12' in open(os.path.join(out, "metrics.jsonl")).read()
    # this version's checkpoint, no finish record (the run was killed after its last evaluation): resumed
    capsys.readouterr()
    Loop(parse_args(in_place(today) + ["--resume_from_checkpoint", "auto"])).fit()
    assert "resumed from" in "".join(capsys.readouterr())


def test_checkpoints_of_a_newer_format_or_first_n_rows_subsets_are_refused(tiny_model, tiny_data, tmp_path):
    """loop_state.json records its format: a newer one than this version reads is refused, naming it. A
    checkpoint without a data record and without --lora_r in its options comes from a loop before 2026-11-29,
    which took the first N rows for --max_*_samples (now a seeded random subset): resumed, it trained on other
    examples, silently (audit30 F3)."""
    from loop import Loop, parse_args

    class Crash(Loop):
        def on_epoch_start(self):
            if self.state.epoch == 1:
                raise KeyboardInterrupt  # after the first epoch's checkpoint

    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, checkpointing_steps="epoch")
    with pytest.raises(KeyboardInterrupt):
        Crash(parse_args(args)).fit()
    (path,) = glob.glob(os.path.join(out, "checkpoints", "step_*"))
    with open(os.path.join(path, ckpt.STATE_FILE)) as f:
        state = json.load(f)
    assert state["format"] == ckpt.STATE_FORMAT and state["loop_version"] == LOOP_VERSION
    again = args + ["--resume_from_checkpoint", "latest"]
    _edit_state(path, lambda r: r.update(format=ckpt.STATE_FORMAT + 1, loop_version="9.1.0"))
    with pytest.raises(UserError, match=rf"checkpoint '{re.escape(path)}' was written by a newer version of loop "
                                        rf"\(loop 9\.1\.0, checkpoint format {ckpt.STATE_FORMAT + 1}; this one, "
                                        rf"{re.escape(LOOP_VERSION)}, reads up to {ckpt.STATE_FORMAT}\); upgrade loop"):
        Crash(parse_args(again)).setup()

    def older(r):
        r.pop("format")
        r.pop("data")
        r["config"].pop("lora_r")

    _edit_state(path, older)
    with pytest.raises(UserError, match=r"comes from an older version of loop, which took the first "
                                        r"--max_train_samples / --max_eval_samples rows \(now a seeded random subset"):
        Crash(parse_args(again)).setup()
    _edit_state(path, lambda r: r["config"].update(lora_r=None))  # a version of 11-29 10:00 or later: resumes
    Crash(parse_args(again)).setup()
    # options that did nothing then (taken silently before 2026-12-03, refused now): resumed without them (audit35)
    _edit_state(path, lambda r: r["config"].update(lora_dropout=0.1, dataset_config_name="plain_text"))
    Crash(parse_args(again)).setup()
    # an option this loop does not have, under the same version and format (a newer loop's: options were added
    # without either changing): "resume with the same settings" named no setting that could (compat F2)
    _edit_state(path, lambda r: r["config"].update(future_option=False))
    with pytest.raises(UserError) as refused:
        Crash(parse_args(again)).setup()
    assert str(refused.value) == (f"checkpoint '{path}' records options this loop does not have (--future_option "
                                  f"False → (gone)): it was made by a newer loop (upgrade loop to resume it), by an "
                                  f"older one that had them, or with a variant's config; resume it with that loop, or "
                                  f"start a new run in another --output_dir.")
    _edit_state(path, lambda r: r["config"].update(seed=r["config"]["seed"] + 1))  # and a setting that differs
    with pytest.raises(UserError) as refused:
        Crash(parse_args(again)).setup()
    assert "different config (--seed" in str(refused.value) and "--future_option False → (gone)" in str(refused.value)
    assert str(refused.value).endswith("; an option (gone) is one this loop does not have: a newer loop's (upgrade "
                                       "loop to resume it), an older one's that was dropped, or a variant config's.")
    _edit_state(path, lambda r: r["config"].pop("future_option"))
    with pytest.raises(UserError) as refused:
        Crash(parse_args(again)).setup()
    assert "different config (--seed" in str(refused.value) and "(gone)" not in str(refused.value)


def crash_at_second_epoch():
    """A Loop class that stops (KeyboardInterrupt) as its second epoch starts, after the first epoch's checkpoint,
    until its `armed` is set False (then it resumes and finishes: the same loop class, as a resume requires)."""
    from loop import Loop

    class Crash(Loop):
        armed = True

        def on_epoch_start(self):
            if self.state.epoch == 1 and self.armed:
                raise KeyboardInterrupt

    return Crash


def test_a_checkpoint_before_seeded_subsets_resumes_where_the_limits_cut_nothing(tiny_model, tiny_data, tmp_path,
                                                                                 capsys):
    """Limits no smaller than the files (600 and 200 rows) cut nothing: a loop before 2026-11-29 read the same rows,
    its checkpoint resumes (it was refused: the cut split's length could not tell "cut to N" from "had N"; audit35
    F4)."""
    from loop import parse_args

    Crash = crash_at_second_epoch()
    out = str(tmp_path / "whole")
    args = small(tiny_model, tiny_data, out, checkpointing_steps="epoch", max_train_samples=600, max_eval_samples=200,
                 per_device_train_batch_size=64)
    with pytest.raises(KeyboardInterrupt):
        Crash(parse_args(args)).fit()
    (path,) = glob.glob(os.path.join(out, "checkpoints", "step_*"))

    def older(r):
        r.pop("format")
        r.pop("data")
        r["config"].pop("lora_r")

    _edit_state(path, older)
    Crash.armed = False
    loop = Crash(parse_args(args + ["--resume_from_checkpoint", "latest"]))
    loop.fit()
    assert loop.data.subset_cut == frozenset() and loop.state.global_step == 20
    assert "resumed from" in "".join(capsys.readouterr())


class _Planted:
    """A pickle that runs code as it loads (then gives back the genuine object): what a planted checkpoint holds."""

    def __init__(self, inner, mark):
        self.inner, self.mark = inner, mark

    def __reduce__(self):
        import pickle

        return (eval, (f"(open({self.mark!r}, 'w').close(), __import__('pickle').loads({pickle.dumps(self.inner)!r}))[1]",))


def test_a_checkpoints_pickles_run_no_code_on_resume(tiny_model, tiny_data, tmp_path):
    """The scheduler's and the TrainState's files (custom_checkpoint_<i>.pkl: accelerate loads them with
    weights_only=False) and the RNG file (loaded again by rng_problem, weights_only=False) ran the code a planted
    checkpoint put in them, its checksums rewritten in its own loop_state.json (audit38 F2). Now every file loads
    with torch's weights-only unpickler: the resume is refused naming the file, and nothing ran. An untouched copy
    resumes, bit for bit as before (test_reliability's exact-resume tests)."""
    import hashlib

    import torch

    from loop import parse_args

    Crash = crash_at_second_epoch()
    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, checkpointing_steps="epoch")
    with pytest.raises(KeyboardInterrupt):
        Crash(parse_args(args)).fit()
    (path,) = glob.glob(os.path.join(out, "checkpoints", "step_*"))
    clean = str(tmp_path / "clean")
    shutil.copytree(path, clean)
    Crash.armed = False
    for name, said in [("custom_checkpoint_0.pkl", r"'custom_checkpoint_0.pkl' holds builtins.eval.*, which torch's "
                                                   r"weights-only loader refuses .*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"),
                       ("custom_checkpoint_1.pkl", r"'custom_checkpoint_1.pkl' holds builtins.eval"),
                       ("random_states_0.pkl", r"did not restore the random number generators \('random_states_0.pkl'")]:
        shutil.rmtree(path)
        shutil.copytree(clean, path)
        mark = str(tmp_path / f"ran-{name}")
        file = os.path.join(path, name)
        torch.save(_Planted(torch.load(file, weights_only=False), mark), file)
        with open(file, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        _edit_state(path, lambda r: r["files"].update({name: digest}))
        with pytest.raises(UserError, match=said):
            Crash(parse_args(args + ["--resume_from_checkpoint", "latest"])).fit()
        assert not os.path.exists(mark), f"{name} ran its code"
    shutil.rmtree(path)
    shutil.copytree(clean, path)
    loop = Crash(parse_args(args + ["--resume_from_checkpoint", "latest"]))
    loop.fit()
    assert loop.state.global_step == 12


class _Stats:
    """A variant's state of numpy values (a histogram, a mean from np.mean), or a deque when `queue`."""

    def __init__(self, queue=False):
        import numpy as np

        self.hist, self.mean, self.queue = np.zeros(4), np.float64(0.0), queue

    def update(self, step):
        import numpy as np

        self.hist[step % 4] += 1
        self.mean = np.float64(self.hist.mean() + step)

    def state_dict(self):
        import collections

        import numpy as np

        state = {"hist": self.hist, "mean": self.mean, "seen": np.int64(self.hist.sum()), "on": np.bool_(True),
                 "half": self.hist.astype(np.float16), "ids": np.arange(3, dtype=np.int32)}
        return {**state, "recent": collections.deque([1, 2], maxlen=4)} if self.queue else state

    def load_state_dict(self, state):
        self.hist, self.mean = state["hist"], state["mean"]


def test_a_variants_numpy_state_resumes_and_one_no_resume_could_load_is_refused_at_the_first_checkpoint(
        tiny_model, tiny_data, tmp_path, monkeypatch):
    """Checkpoints load weights-only (test_a_checkpoints_pickles_run_no_code_on_resume): numpy arrays of every
    dtype and numpy scalars in a variant's state resume as before (accelerate's loader took uint32 arrays alone:
    audit40 F1); a state the loader would refuse (a deque) is refused when the first checkpoint is written, naming
    the object, not at the resume after a preemption; TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 loads a checkpoint the
    user trusts (accelerate's loader passed weights_only=True, which the variable cannot override: audit40 F2)."""
    import numpy as np

    from loop import Callback, Loop, parse_args

    def variant(queue=False, crash=True):
        class Stats(Loop):
            armed = crash

            def checkpoint_objects(self):
                self.stats = _Stats(queue)
                return [self.stats]

            def on_step_end(self):
                self.stats.update(self.state.global_step)

            def on_epoch_start(self):
                if self.state.epoch == 1 and self.armed:
                    raise KeyboardInterrupt

        return Stats

    out = str(tmp_path / "out")
    args = small(tiny_model, tiny_data, out, checkpointing_steps="epoch")
    with pytest.raises(KeyboardInterrupt):
        variant()(parse_args(args)).fit()
    resumed = variant(crash=False)(parse_args(args + ["--resume_from_checkpoint", "latest",
                                                      "--trust_remote_code", "true"]))  # (it may change on resume)
    resumed.fit()
    assert resumed.stats.hist.dtype == np.float64 and resumed.stats.hist.sum() == 12 and resumed.state.global_step == 12
    with pytest.raises(UserError, match=r"_Stats.state_dict\(\) holds collections.deque, which a resume would not "
                                        r"load \(checkpoints load weights-only: no code runs\); return tensors"):
        variant(queue=True)(parse_args(small(tiny_model, tiny_data, str(tmp_path / "q"), checkpointing_steps="epoch")))\
            .fit()
    # an array of objects: no name in the pickle says so (audit41 F1)
    monkeypatch.setattr(_Stats, "state_dict", lambda self: {"names": np.array(["a", None], dtype=object)})
    with pytest.raises(UserError, match=r"_Stats.state_dict\(\) holds a numpy object array, which a resume would not"):
        variant()(parse_args(small(tiny_model, tiny_data, str(tmp_path / "o"), checkpointing_steps="epoch"))).fit()
    monkeypatch.undo()
    # a callback's state rides in TrainState's: the refusal named TrainState, the loop's own class (audit53 F2)

    class LastImprovement(Callback):
        def state_dict(self):
            import datetime

            return {"when": datetime.datetime(2026, 1, 1)}

        def load_state_dict(self, state):
            pass

    with pytest.raises(UserError, match=r"callback LastImprovement's state_dict\(\) holds datetime.datetime, which a "
                                        r"resume would not load .* \(a datetime as its isoformat\(\)"):
        Loop(parse_args(small(tiny_model, tiny_data, str(tmp_path / "c"), checkpointing_steps="epoch")),
             callbacks=[LastImprovement()]).fit()
    # a model with code of its own (auto_map): --trust_remote_code picks its classes, so it may not change (audit41 F2)
    step_6 = os.path.join(out, "checkpoints", "step_6")
    _edit_state(step_6, lambda r: r["model_config"].update(auto_map={"AutoModel": "m.M"}))
    with pytest.raises(UserError, match=r"different config .*trust_remote_code"):
        variant()(parse_args(small(tiny_model, tiny_data, str(tmp_path / "a"), checkpointing_steps="epoch") +
                             ["--resume_from_checkpoint", step_6, "--trust_remote_code", "true"])).setup()
    # a checkpoint the user trusts, holding what the loader refuses: loaded with the variable
    (path,) = glob.glob(os.path.join(out, "checkpoints", "step_6"))
    import fractions

    import torch

    torch.save({"hist": np.zeros(4), "mean": fractions.Fraction(1, 3)}, os.path.join(path, "custom_checkpoint_2.pkl"))
    loop = variant()(parse_args(small(tiny_model, tiny_data, str(tmp_path / "t"))))
    loop.setup()
    with pytest.raises(UserError, match=r"'custom_checkpoint_2.pkl' holds fractions.Fraction, which torch's "
                                        r"weights-only loader refuses .* TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 loads it"):
        loop.checkpointer.load_registered(path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    loop.checkpointer.load_registered(path)
    assert loop.stats.mean == fractions.Fraction(1, 3)
    # ... and the state a resume would then load is not refused when it is saved (audit41 F3)
    variant(queue=True, crash=False)(parse_args(small(tiny_model, tiny_data, str(tmp_path / "q2"),
                                                      checkpointing_steps="epoch", max_train_samples=16))).fit()


def test_a_checkpoint_loads_into_a_model_compiled_or_not_as_its_run_was_or_not(tiny_model, tmp_path):
    """--torch_compile may change on resume, but accelerate saves a compiled model's weights as `_orig_mod.<name>`
    and loads strictly: a compiled run's checkpoint resumed without compiling (or the other way round) was refused
    with "Missing key(s)". Both ways now load the weights exactly, and the frozen parameters are named as the model
    names them (a compiled run recorded `_orig_mod.` names, which a resume then unfroze)."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoConfig, AutoModelForSequenceClassification

    def prepared(compiled, seed):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model, num_labels=2))
        model.distilbert.embeddings.requires_grad_(False)  # frozen, as a variant may
        acc = Accelerator(cpu=True)
        model = torch.compile(model) if compiled else model  # (nothing is compiled before a forward)
        model, opt = acc.prepare(model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad]))
        return acc, model

    def plain_weights(model):
        return {k.replace(checkpoint_folders.COMPILED, ""): v.clone() for k, v in model.state_dict().items()}

    for saved_compiled in (True, False):
        acc, model = prepared(saved_compiled, seed=1)
        path = str(tmp_path / f"saved_compiled_{saved_compiled}")
        acc.save_state(path)
        frozen = ckpt.frozen_names(acc.unwrap_model(model))
        assert frozen and not any("_orig_mod" in n for n in frozen), frozen
        acc2, model2 = prepared(not saved_compiled, seed=2)  # other weights, to be replaced by the checkpoint's
        want, before = plain_weights(model), plain_weights(model2)
        assert any(not torch.equal(want[k], before[k]) for k in want)
        ckpt.load_accelerator_files(acc2, path, model2)
        got = plain_weights(model2)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), saved_compiled
        # a hook had unfrozen the embeddings before the checkpoint; the rebuilt model froze them again
        acc.unwrap_model(model).distilbert.embeddings.requires_grad_(True)
        said = []
        ckpt.restore_trainable(SimpleNamespace(accelerator=acc2, model=model2, print=said.append),
                               ckpt.frozen_names(acc.unwrap_model(model)))
        assert all(p.requires_grad for p in acc2.unwrap_model(model2).parameters()), said
        assert said and "unfrozen" in said[0]
        # an older compiled run's record (names of the compile wrapper) reads the same
        ckpt.restore_trainable(SimpleNamespace(accelerator=acc2, model=model2, print=said.append),
                               [checkpoint_folders.COMPILED + n for n in frozen])
        assert {n for n, p in acc2.unwrap_model(model2, keep_torch_compile=False).named_parameters()
                if not p.requires_grad} == set(frozen)
        # a record of parameters this model lacks (an older loop's LoRA on a vision tower; review rev2 F1): one line,
        # where loading the weights failed as missing keys, advising another checkpoint of the same run
        with pytest.raises(UserError, match=r"^the checkpoint records 1 parameter\(s\) this model does not have "
                                            r"\(vision_tower.q_proj.base_layer.weight\): it was made with another "
                                            r"layout of the model"):
            ckpt.restore_trainable(SimpleNamespace(accelerator=acc2, model=model2, print=said.append),
                                   frozen + ["vision_tower.q_proj.base_layer.weight"])
    # Loop.unwrapped_model: the model itself, also where accelerate's unwrapping keeps a compile wrapper (DDP around
    # a compiled model: it removes an outer compile only)
    from loop import Loop

    inner = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(tiny_model, num_labels=2))
    under_ddp = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m, **kw: m), model=torch.compile(inner))
    assert Loop.unwrapped_model.fget(under_ddp) is inner


@pytest.mark.slow
@pytest.mark.parametrize("first", ["compiled", "plain"])
def test_a_run_stopped_mid_epoch_resumes_with_torch_compile_changed_under_ddp(tiny_model, tiny_data, tmp_path, first):
    """The end to end of the test above, in 2 processes (DDP, compiled with torch.compile's eager backend): a run
    stopped by SIGTERM at step 3 resumes with --torch_compile changed (a node where compiling fails, a debugging
    session; or compiling added) and finishes. Its checkpoint was refused with "Missing key(s) in state_dict", in
    one process too; the first fix compared the names with DDP's wrapper (`module.`) and still refused it."""
    common = dict(max_train_samples=64, num_train_epochs=2, logging_steps=1, max_eval_samples=32,
                  per_device_train_batch_size=8, per_device_eval_batch_size=8, checkpointing_steps=2)
    out = str(tmp_path / "run")
    compile_flag = {"compiled": "true", "plain": "false"}
    p = run_cli(small(tiny_model, tiny_data, out, torch_compile=compile_flag[first], **common), nproc=2, how="fork",
                script=FAULTS, check=False, LOOP_TEST_SIGNAL_AT_STEP=3, LOOP_TEST_COMPILE_EAGER=1)
    assert p.returncode == EXIT_PREEMPTED, p.stderr[-3000:]
    then = "false" if first == "compiled" else "true"
    p = run_cli(small(tiny_model, tiny_data, out, torch_compile=then, **common) + ["--resume_from_checkpoint", "latest"],
                nproc=2, how="fork", script=FAULTS, check=False, LOOP_TEST_COMPILE_EAGER=1)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from" in p.stdout and "step_3" in p.stdout, p.stdout[-3000:]
    assert [r["step"] for r in train_logs(out)] == list(range(1, 9))
    assert [e["epoch"] for e in evals(out)] == [1, 2]
    assert os.path.isfile(os.path.join(out, "best", "model.safetensors"))


def test_an_output_dir_inside_another_runs_best_or_checkpoints_is_refused(tiny_model, tiny_data, tmp_path):
    """--output_dir out/best (fine-tuning a run's best/ into itself), out/checkpoints or a checkpoint: refused in one
    line before anything is written there. It trained, rewrote best/'s training_args.json (the run's resume then
    called best/ damaged), and the outer run's next save would have replaced the folder (audit58 c2)."""
    out = str(tmp_path / "out")
    run_cli(tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=32, max_eval_samples=16,
                      checkpointing_steps=1), how="python")
    best, step = os.path.join(out, "best"), os.path.join(out, "checkpoints", "step_2")
    before = {f: open(os.path.join(best, f), "rb").read() for f in os.listdir(best)}
    cases = [(best, "is another run's best/ model"), (os.path.join(best, "again"), f"lies inside '{best}', another "
             f"run's best/ model"), (os.path.join(out, "checkpoints"), "is another run's checkpoints/ folder"),
             (os.path.join(step, "x"), f"lies inside '{step}', a checkpoint of another run")]
    for folder, says in cases:
        p = run_cli(tiny_args(best, tiny_data, folder, from_scratch="false", num_train_epochs=1, max_train_samples=32,
                              max_eval_samples=16), how="python", check=False)
        assert p.returncode == 2, p.stdout[-2000:]
        assert p.stderr.strip().splitlines()[-1] == (
            f"error: --output_dir '{folder}' {says}; a run there would overwrite that run's files (and be replaced by "
            f"its next save): choose a folder outside it."), p.stderr[-2000:]
    assert {f: open(os.path.join(best, f), "rb").read() for f in os.listdir(best)} == before
    assert not os.path.exists(os.path.join(best, "again"))
    checkpoint_folders.check_not_inside_a_run(str(tmp_path / "elsewhere" / "new"))  # an ordinary folder: no complaint
    checkpoint_folders.check_not_inside_a_run(out)  # the run's own folder: its own checks decide (resume, overwrite)


def test_best_or_checkpoints_as_links_are_refused_at_the_start_and_publish_unlinks_a_link(tiny_model, tiny_data,
                                                                                             tmp_path):
    """best/ linked to a scratch disk was replaced by a real folder at the first save (the link's target kept the old
    model, the link left as .tmp-best-*: rmtree refuses links and ignore_errors hid it); linked to a folder that is
    gone, the trained model was lost at the end (NotADirectoryError); a dangling checkpoints/ link failed at the
    first save with a traceback (audit61). One line each, before any training; a checkpoints/ link to a folder
    that exists is written through as before."""
    scratch = tmp_path / "scratch"
    (scratch / "ck").mkdir(parents=True)
    args = dict(num_train_epochs=1, max_train_samples=32, max_eval_samples=16, checkpointing_steps=1)
    cases = [("best", scratch / "ck", "is a symbolic link (to '{target}'); each new best model replaces best/ as a "
              "whole folder"), ("best", scratch / "gone", "is a symbolic link (to '{target}')"),
             ("checkpoints", scratch / "gone", "is a symbolic link to '{target}', which does not exist")]
    for i, (name, target, says) in enumerate(cases):
        out = tmp_path / f"out{i}"
        out.mkdir()
        os.symlink(target, out / name)
        p = run_cli(tiny_args(tiny_model, tiny_data, str(out), **args), how="python", check=False)
        assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
        line = p.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: '{out / name}' " + says.format(target=target)), line
        assert "step=" not in p.stdout and sorted(os.listdir(out)) == [name]  # nothing trained, nothing written
    out = tmp_path / "linked"
    out.mkdir()
    os.symlink(scratch / "ck", out / "checkpoints")
    run_cli(tiny_args(tiny_model, tiny_data, str(out), **args), how="python")
    assert os.path.islink(out / "checkpoints") and "step_2" in os.listdir(scratch / "ck")
    # a finished run whose best/ was moved to another disk and linked back: its re-run (auto) writes nothing, so it
    # is left alone as before, not refused (r2)
    shutil.move(out / "best", scratch / "best")
    os.symlink(scratch / "best", out / "best")
    p = run_cli(tiny_args(tiny_model, tiny_data, str(out), resume_from_checkpoint="auto", **args), how="python")
    assert "nothing to resume" in p.stdout and os.path.islink(out / "best"), p.stdout[-2000:]
    # publish over a link: the new folder takes its place, the link goes (not left beside it)
    new, final = tmp_path / "new", tmp_path / "final"
    new.mkdir()
    (new / "f").write_text("new")
    os.symlink(scratch / "gone", final)
    storage.publish(str(new), str(final))
    assert (final / "f").read_text() == "new" and not os.path.islink(final)
    assert sorted(os.listdir(tmp_path)) == sorted(["final", "linked", "scratch"] + [f"out{i}" for i in range(3)])


def test_a_non_finite_evaluation_loss_is_never_best():
    """metric_value refuses a NaN eval_loss beside a finite metric (README: such weights are never best/; audit58 a
    M23)."""
    from loop.checkpoint import Checkpointer
    from loop.errors import UserError

    ck = SimpleNamespace(cfg=SimpleNamespace(metric="accuracy"), accelerator=SimpleNamespace(mixed_precision="no"))
    assert Checkpointer.metric_value(ck, {"eval_accuracy": 0.5, "eval_loss": 0.7}, 1) == 0.5
    with pytest.raises(UserError, match=r"^evaluation at epoch 1 gave a non-finite loss \(eval_loss=nan\); lower "
                                        r"--learning_rate \(these weights are not saved as best\)\.$"):
        Checkpointer.metric_value(ck, {"eval_accuracy": 0.5, "eval_loss": math.nan}, 1)
    ck.accelerator.mixed_precision = "fp16"  # fp16's range: the usual cause under fp16 alone (audit63 u3)
    with pytest.raises(UserError, match="lower --learning_rate or use bf16 instead of fp16"):
        Checkpointer.metric_value(ck, {"eval_accuracy": 0.5, "eval_loss": math.inf}, 1)
    # a metric without a value on this data (AUC of one class) beside a finite loss: said as that, not as a
    # diverged run to fix with the learning rate (audit63 u2)
    ck.cfg.metric = "auc"
    with pytest.raises(UserError, match=r"^evaluation at epoch 2 gave eval_auc=nan beside a finite loss: --metric auc "
                                        r"is undefined on this evaluation data \(a score of one class, say\); pick "
                                        r"another --metric, or have compute_metrics give a number there\.$"):
        Checkpointer.metric_value(ck, {"eval_auc": math.nan, "eval_loss": 0.7}, 2)


class Counter:
    """A callback that keeps state: its count of steps."""

    def __init__(self):
        self.n = 0

    def on_step_end(self, loop):
        self.n += 1

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


@pytest.mark.parametrize("others", [True, False])
def test_a_stateful_callback_the_checkpoint_lacks_is_said(others, tiny_model, tiny_data, tmp_path, capsys):
    """A resume with a callback that keeps state (load_state_dict) but has none in the checkpoint warns that it
    starts afresh (README: callbacks' state is checkpointed; audit58 a M30), also when the checkpoint holds no
    callback state at all ({}: all() of nothing read it as the positional format of before 2026-12-02, and the
    warning was skipped; audit58 a2)."""
    from loop import Loop, parse_args

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=64, checkpointing_steps=2,
                     early_stopping_patience=5 if others else None)  # (EarlyStopping's state in the checkpoint)
    Loop(parse_args(args)).fit()
    capsys.readouterr()
    step_2 = os.path.join(out, "checkpoints", "step_2")
    with pytest.warns(Warning, match="the checkpoint holds no state of callback Counter: it starts afresh"):
        Loop(parse_args(args + ["--resume_from_checkpoint", step_2]), callbacks=[Counter()]).fit()


class _RunsCode:
    """A pickle payload: loading it calls os.system (what a hostile checkpoint's .metadata would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow  # (15 s on 2 cores)
def test_a_sharded_checkpoint_whose_metadata_pickle_runs_code_is_refused(tmp_path, monkeypatch):
    """An FSDP checkpoint's pytorch_model_fsdp_0/.metadata is read by torch.distributed.checkpoint with a plain
    pickle.load: a checkpoint copied from someone else ran their code on resume (audit62 s1). A real one passes
    the check; one that names anything else is refused in one line, nothing run."""
    import pickle
    import warnings

    import torch
    import torch.distributed.checkpoint as dcp

    step = tmp_path / "checkpoints" / "step_3"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (one process, no process group: dcp says so)
        dcp.save({"model": {"w": torch.ones(3, 4), "b": torch.zeros(2, dtype=torch.bfloat16)}, "step": 3},
                 checkpoint_id=str(step / "pytorch_model_fsdp_0"))
    checkpoint_folders.check_sharded_metadata(str(step))
    # Python 3.13 names pathlib's classes pathlib._local in its pickles: a real checkpoint written there passes too
    import pathlib
    import sys

    real = pickle.load(open(step / "pytorch_model_fsdp_0" / ".metadata", "rb"))
    monkeypatch.setitem(sys.modules, "pathlib._local", pathlib)
    monkeypatch.setattr(pathlib.PosixPath, "__module__", "pathlib._local")
    py313 = pickle.dumps(real)
    monkeypatch.undo()
    assert b"pathlib._local" in py313
    (step / "pytorch_model_fsdp_0" / ".metadata").write_bytes(py313)
    checkpoint_folders.check_sharded_metadata(str(step))
    # a pickle that edits an allowed class (BUILD on the class itself) instead of building a Metadata: refused, and
    # the edit happened in the checking child process, not here
    (step / "x_0").mkdir()
    (step / "x_0" / ".metadata").write_bytes(b"cpathlib\nPosixPath\n(N}(V__truediv__\nctorch\nSize\nutb.")
    with pytest.raises(UserError, match=r"'x_0/\.metadata' holds a type, not a Metadata, which no sharded"):
        checkpoint_folders.check_sharded_metadata(str(step))
    assert str(pathlib.Path("/tmp") / "x") == "/tmp/x"
    (step / "x_0" / ".metadata").unlink()
    marker = tmp_path / "ran"
    (step / "optimizer_0").mkdir()
    (step / "optimizer_0" / ".metadata").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UserError, match=r"checkpoint '.*step_3': 'optimizer_0/\.metadata' holds posix\.system, "
                                        r"which no sharded checkpoint holds .*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"):
        checkpoint_folders.check_sharded_metadata(str(step))
    assert not marker.exists()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # the user trusts it: torch's own load decides
    checkpoint_folders.check_sharded_metadata(str(step))
    assert not marker.exists()


# ------------------------------------------------------------ safe_load, unit by unit (mutation audit m2)
def test_what_a_resume_could_not_load_is_found_in_any_container_and_named_once():
    """safe_load.odd_arrays: numpy object and structured arrays (and such scalars) are what the weights-only
    loader refuses without a name in the pickle; they are found nested in dicts, lists, tuples, sets and
    frozensets, each kind named once however often it occurs, and plain numeric arrays are not reported."""
    import numpy as np

    from loop.safe_load import odd_arrays

    obj = np.array(["a", None], dtype=object)
    rec = np.zeros(2, dtype=[("x", "i4"), ("y", "f4")])
    fine = {"hist": np.zeros(4), "n": np.int64(3), "on": np.bool_(True), "when": np.datetime64("2026-01-01"),
            "ids": [np.arange(3, dtype=np.int32)], "s": np.str_("x")}
    assert odd_arrays(fine) == []
    assert odd_arrays({"a": {"b": obj}}) == ["a numpy object array"]
    assert odd_arrays({"a": rec}) == ["a numpy structured array"]
    assert odd_arrays({"v": rec[0]}) == ["a numpy structured array"]  # one record: a np.void scalar
    for wrap in (list, tuple, frozenset):
        assert odd_arrays({"k": wrap([1, (2, wrap([3]) if wrap is not frozenset else 3), "x"])}) == []
    assert odd_arrays([1, (2, [obj])]) == ["a numpy object array"]
    assert odd_arrays({"t": ({"deep": [rec]},)}) == ["a numpy structured array"]
    assert odd_arrays({"s": {1, 2}, "f": frozenset({("x", 1)})}) == []
    held = {"one": obj, "two": [obj, obj], "three": (rec, {"r": rec})}
    assert odd_arrays(held) == ["a numpy object array", "a numpy structured array"]


def test_a_structured_array_the_loader_refuses_is_found_before_a_save(tmp_path):
    """A structured (record) array: torch's weights-only loader refuses it, and what save_registered checks at each
    checkpoint (unsafe_globals of the file plus odd_arrays of the state) finds it, so it is refused at the first
    checkpoint, not at the resume."""
    import numpy as np
    import torch

    from loop.safe_load import load_plain, odd_arrays, unsafe_globals

    state = {"rows": np.zeros(2, dtype=[("x", "i4"), ("y", "f4")])}
    torch.save(state, tmp_path / "s.pkl")
    with pytest.raises(Exception):
        load_plain(str(tmp_path / "s.pkl"))
    assert unsafe_globals(str(tmp_path / "s.pkl")) + odd_arrays(state) != []


@pytest.mark.parametrize("value, trusted", [(None, False), ("0", False), ("", False), ("no", False),
                                            ("false", False), ("1", True), ("y", True), ("yes", True),
                                            ("true", True), ("TRUE", True), ("Yes", True)])
def test_torch_force_no_weights_only_load_is_read_as_torch_spells_true(monkeypatch, value, trusted):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD: the user's word that the checkpoint is trusted, in any of the spellings
    of true (any case); unset or another value, it is not (and a resume loads weights-only)."""
    from loop.safe_load import trust_forced

    if value is None:
        monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    else:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", value)
    assert trust_forced() is trusted


def test_load_plain_takes_numpy_state_refuses_code_and_leaves_torchs_allowed_list_as_it_was(tmp_path, monkeypatch):
    """load_plain adds numpy's types to torch's safe globals for its own load only: the process's list is the
    same afterwards (another weights-only load in the process is not widened); what is not data is refused,
    unless TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says the checkpoint is trusted."""
    import fractions

    import numpy as np
    import torch

    from loop.safe_load import load_plain

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    before = list(torch.serialization.get_safe_globals())
    state = {c: np.zeros(2, dtype=c) for c in ["?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d",
                                                 "g", "F", "D", "G", "S3", "U3", "M8[s]", "m8[s]"]}
    state["scalars"] = [np.float64(1.5), np.int32(2), np.datetime64("2026-01-01"), np.timedelta64(3, "s")]
    torch.save(state, tmp_path / "ok.pkl")
    loaded = load_plain(str(tmp_path / "ok.pkl"))
    assert set(loaded) == set(state) and all(loaded[c].dtype == state[c].dtype for c in state if c != "scalars")
    assert loaded["scalars"] == state["scalars"]
    assert sorted(map(repr, torch.serialization.get_safe_globals())) == sorted(map(repr, before))
    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "code.pkl")
    with pytest.raises(Exception, match="fractions.Fraction"):
        load_plain(str(tmp_path / "code.pkl"))
    assert sorted(map(repr, torch.serialization.get_safe_globals())) == sorted(map(repr, before))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert load_plain(str(tmp_path / "code.pkl")) == {"x": fractions.Fraction(1, 3)}


def test_a_random_state_file_is_compared_with_the_generators_of_its_own_rank(tmp_path):
    """safe_load.rng_problem: the resume stops unless this rank's Python and torch generators hold its own file's
    state (random_states_<rank>.pkl): one generator off is 'was not applied', another rank's file is not this
    one's, and a missing or damaged file is named."""
    import random

    import torch
    from accelerate.utils.constants import RNG_STATE_NAME

    from loop.safe_load import rng_problem

    saved = random.getstate(), torch.get_rng_state()
    try:
        def write(rank):
            torch.save({"random_state": random.getstate(), "torch_manual_seed": torch.get_rng_state()},
                       tmp_path / f"{RNG_STATE_NAME}_{rank}.pkl")

        random.seed(0), torch.manual_seed(0)
        write(0)
        random.seed(1), torch.manual_seed(1)
        write(1)
        assert rng_problem(str(tmp_path), 1) is None
        assert rng_problem(str(tmp_path), 0) == f"'{RNG_STATE_NAME}_0.pkl' was not applied"
        random.random()  # the Python generator moved on
        assert rng_problem(str(tmp_path), 1) == f"'{RNG_STATE_NAME}_1.pkl' was not applied"
        random.seed(1)
        torch.rand(1)  # the torch generator moved on
        assert rng_problem(str(tmp_path), 1) == f"'{RNG_STATE_NAME}_1.pkl' was not applied"
        assert rng_problem(str(tmp_path), 2).startswith(f"'{RNG_STATE_NAME}_2.pkl': ")  # no such file
        (tmp_path / f"{RNG_STATE_NAME}_3.pkl").write_bytes(b"not a pickle")
        assert rng_problem(str(tmp_path), 3).startswith(f"'{RNG_STATE_NAME}_3.pkl': ")
    finally:
        random.setstate(saved[0])
        torch.set_rng_state(saved[1])


def _metadata_pickle(prefix=b""):
    """A genuine torch.distributed.checkpoint Metadata pickle, with `prefix` (opcodes) run before it."""
    import pickle

    from torch.distributed.checkpoint import metadata

    data = pickle.dumps(metadata.Metadata(state_dict_metadata={}), protocol=2)
    return data[:2] + prefix + data[2:]


def test_a_metadata_pickle_that_touches_anything_but_metadata_is_named_even_if_it_ends_in_a_metadata(tmp_path,
                                                                                                     monkeypatch):
    """safe_load.check_metadata allows the metadata module's classes and torch's dtypes, layouts and memory
    formats, nothing else: a pickle that fetches torch.load, or the os module through the metadata module's
    namespace, then builds a genuine Metadata is refused naming what it fetched. A damaged file is left to the
    load to describe; a check that cannot run refuses every file it was given."""
    import subprocess

    from loop.safe_load import check_metadata, metadata_problems

    files = {"plain": _metadata_pickle(), "dtype": _metadata_pickle(b"ctorch\nfloat16\n0"),
             "load": _metadata_pickle(b"ctorch\nload\n0"),
             "os": _metadata_pickle(b"ctorch.distributed.checkpoint.metadata\nos\n0"),
             "dataclass": _metadata_pickle(b"ctorch.distributed.checkpoint.metadata\ndataclass\n0"),
             "damaged": b"\x80\x02ctorch\nSize\n(I1\nI2\ntR.",  # Size(1, 2): a TypeError
             "cut": b"\x80\x02not a pickle"}  # pickle's own UnpicklingError: damage, not a class refused (audit63 m2-1)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    found = {name: check_metadata(str(tmp_path / name)) for name in files}
    assert found == {"plain": None, "dtype": None, "load": "torch.load",
                     "os": "torch.distributed.checkpoint.metadata.os",
                     "dataclass": "torch.distributed.checkpoint.metadata.dataclass", "damaged": None, "cut": None}
    paths = [str(tmp_path / name) for name in files]
    assert metadata_problems(paths) == {str(tmp_path / n): found[n] for n in ("load", "os", "dataclass")}

    def stuck(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 600)

    monkeypatch.setattr(subprocess, "run", stuck)
    problems = metadata_problems(paths[:2])
    assert set(problems) == set(paths[:2]) and all(v.startswith("a pickle that could not be checked (")
                                                   for v in problems.values()), problems


def test_a_checkpoint_of_a_model_compiled_in_part_restores_which_parameters_train():
    """A variant that compiled a part of the model (model.distilbert = torch.compile(...)) records names with
    _orig_mod. inside, as the model names them: stripping it everywhere made every resume of such a run refused as
    'parameters this model does not have' (review rev3 F1), and before that unfroze the frozen ones silently."""
    from types import SimpleNamespace

    import torch

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0] = torch.compile(model[0], backend="eager")
    model[0].requires_grad_(False)
    frozen = ckpt.frozen_names(model)
    assert frozen == ["0._orig_mod.weight", "0._orig_mod.bias"]
    said = []
    loop = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m, **kw: m), model=model, print=said.append)
    model[0].requires_grad_(True)  # the rebuilt model as a hook left it; the checkpoint had it frozen
    ckpt.restore_trainable(loop, frozen)
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == frozen
    assert said == ["trainable parameters as at the checkpoint: 0 unfrozen, 2 frozen (a hook had changed them during "
                    "the run)"], said
