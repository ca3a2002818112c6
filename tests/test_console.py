"""The console and the disk: trackers that fail to start, free disk space, a full disk during a
checkpoint, a quiet predict.py, and progress lines instead of bars when the log is a file.

Everything here runs in-process on the tiny model (well under a second each) but one predict.py
--verbose start (~5 s); the piped-log check of a real CLI run lives with the `stepped` run in
test_everyday.py, the quiet predict CLI in test_core.test_predict_cli.
"""

import collections
import errno
import json
import math
import os
import sys
import time

import pytest

from conftest import ROOT, run_cli, tiny_args

from loop import checkpoint_folders
from loop import Loop, parse_args
from loop import checkpoint as ckpt
from loop import storage
from loop.errors import UserError
from loop.logs import PlainProgress, RunLog

Usage = collections.namedtuple("Usage", "total used free")


def small_args(model, data, out, **over):
    """One epoch of 4 optimizer steps (64 rows, batches of 16), 32 evaluation rows."""
    base = {"num_train_epochs": 1, "max_train_samples": 64, "max_eval_samples": 32}
    base.update(over)
    return parse_args(tiny_args(model, data, out, **base))


def test_the_log_s_line_count_follows_appends_rewrites_and_a_cut_last_line(tmp_path):
    """A checkpoint records how many lines metrics.jsonl had (its resume cuts the log back to them). Counted on from
    the last count (a checkpoint no longer reads the whole log: 1 s at a million lines, audit61), the count must
    still be the file's: after appends, after the log is rewritten shorter or longer (a resume's cut, a copied
    log: another file), with a last line cut short, and with no log."""
    from accelerate import Accelerator

    from loop.storage import replace_file

    out = tmp_path / "out"
    runlog = RunLog(parse_args(["--output_dir", str(out)]), Accelerator(cpu=True))
    assert runlog.count_lines() == 0
    for step in range(1, 4):
        runlog.record({"step": step, "loss": 0.5})
        assert runlog.count_lines() == step
    path = out / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    replace_file(str(path), b"".join(lines[:2]))  # a resume's cut: shorter
    assert runlog.count_lines() == 2
    replace_file(str(path), b"{}\n" * 9)  # longer, another file (other bytes: counted from its start, not on)
    assert runlog.count_lines() == 9
    with open(path, "ab") as f:
        f.write(b'{"step": 10, "lo')  # a write cut short
    assert runlog.count_lines() == 10
    with open(path, "ab") as f:
        f.write(b'ss": 0.1}\n' + b"{}\n" * 100000)
    assert runlog.count_lines() == 100010 == len(path.read_bytes().splitlines())
    path.unlink()
    assert runlog.count_lines() == 0


# ---------------------------------------------------------------- trackers that fail to start
def test_tracker_that_cannot_start_is_one_line_naming_it(tmp_path):
    """TensorBoard writes to output_dir/loop: a file of that name makes its SummaryWriter fail for real."""
    from accelerate import Accelerator

    out = tmp_path / "out"
    out.mkdir()
    (out / "loop").write_text("not a folder\n")
    cfg = parse_args(["--output_dir", str(out), "--report_to", "tensorboard"])
    runlog = RunLog(cfg, Accelerator(log_with="tensorboard", project_dir=str(out)))
    with pytest.raises(UserError) as e:
        runlog.start_trackers()
    msg = str(e.value)
    assert "--report_to tracker 'tensorboard' failed to start" in msg, msg
    assert "File exists" in msg and "drop it from --report_to" in msg and "\n" not in msg, msg


def test_tracker_failure_leaves_the_earlier_run_untouched(tiny_model, tiny_data, tmp_path):
    """Trackers start before an earlier run's log and checkpoints are cleared (--overwrite_output_dir):
    a tracker that cannot start must not cost the user the earlier run."""
    out = tmp_path / "out"
    Loop(small_args(tiny_model, tiny_data, str(out), checkpointing_steps=2)).fit()
    before = sorted(os.listdir(out / "checkpoints")), (out / "metrics.jsonl").read_text()
    (out / "loop").write_text("not a folder\n")  # TensorBoard's log folder: its start fails for real
    lp = Loop(small_args(tiny_model, tiny_data, str(out), report_to="tensorboard", overwrite_output_dir="true"))
    with pytest.raises(UserError, match="tracker 'tensorboard' failed to start"):
        lp.fit()
    lp.checkpointer.release()
    assert (sorted(os.listdir(out / "checkpoints")), (out / "metrics.jsonl").read_text()) == before


def test_failing_tracker_is_named_among_several(tmp_path, monkeypatch):
    """With two trackers, the message names the one whose start raised, with that tracker's fix."""
    from accelerate import Accelerator
    from accelerate.tracking import TensorBoardTracker

    def offline(self):
        raise ConnectionError("could not reach api.wandb.ai. Retrying is pointless")

    class FakeWandb(TensorBoardTracker):  # a tracker object of its own name, failing like wandb offline
        name = "wandb"
        start = offline

    finished = []
    monkeypatch.setattr(TensorBoardTracker, "finish", lambda self: finished.append(self.name))

    cfg = parse_args(["--output_dir", str(tmp_path), "--report_to", "tensorboard"])
    acc = Accelerator(log_with=["tensorboard", FakeWandb("loop", str(tmp_path))], project_dir=str(tmp_path))
    with pytest.raises(UserError) as e:
        RunLog(cfg, acc).start_trackers()
    msg = str(e.value)
    assert "tracker 'wandb' failed to start (could not reach api.wandb.ai)" in msg, msg
    assert "WANDB_MODE=offline" in msg and "'tensorboard'" not in msg, msg
    # every tracker accelerate built was finished (the one that did start is not left open), then dropped
    assert acc.trackers == [] and finished == ["tensorboard", "wandb"], (acc.trackers, finished)
    # --report_to all (every tracker installed): nothing to drop from it, the trackers to name instead (audit34)
    cfg = parse_args(["--output_dir", str(tmp_path), "--report_to", "all"])
    acc = Accelerator(log_with=[FakeWandb("loop", str(tmp_path))], project_dir=str(tmp_path))
    with pytest.raises(UserError) as e:
        RunLog(cfg, acc).start_trackers()
    msg = str(e.value)
    assert "tracker 'wandb' failed to start" in msg and "drop it" not in msg, msg
    assert msg.endswith("or name the trackers you want instead of all (--report_to tensorboard, say; all starts "
                        "every one installed)."), msg


# ---------------------------------------------------------------- free disk space
def test_too_little_disk_for_one_checkpoint_stops_before_training(tiny_model, tiny_data, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    monkeypatch.setattr("shutil.disk_usage", lambda path: Usage(10**9, 10**9 - 200_000, 200_000))
    lp = Loop(small_args(tiny_model, tiny_data, out, checkpointing_steps=2))
    with pytest.raises(UserError) as e:
        lp.fit()
    lp.checkpointer.release()
    msg = str(e.value)
    assert f"--output_dir '{out}' has 200 kB free but one checkpoint" in msg, msg
    assert "(~1.0 MB) and best/ (~335 kB) need about 1.3 MB" in msg and "drop --checkpointing_steps" in msg and "another --output_dir" in msg, msg
    assert not os.path.exists(os.path.join(out, "metrics.jsonl"))  # stopped before the first step


def test_few_checkpoints_fit_is_one_warning(tiny_model, tiny_data, tmp_path, monkeypatch):
    """Room for best/ and 1.5 checkpoints; the run holds 3 at once (--save_total_limit 2, plus the new one)."""
    out = str(tmp_path / "out")
    lp = Loop(small_args(tiny_model, tiny_data, out, checkpointing_steps=1, save_total_limit=2))

    def disk_usage(path):  # asked once the model exists: sized from it
        one, best = checkpoint_folders.save_sizes(lp.model)
        return Usage(10**12, 10**12, best + int(1.5 * one))

    monkeypatch.setattr("shutil.disk_usage", disk_usage)
    with pytest.warns(UserWarning) as warned:
        lp.setup()
    lp.checkpointer.release()
    msgs = [str(w.message) for w in warned if "free" in str(w.message)]
    assert len(msgs) == 1 and "room for 1 of the 3 checkpoints this run holds at once" in msgs[0], msgs
    assert "--save_total_limit" in msgs[0], msgs


def test_checkpoints_held_counts_the_resumed_one_rotation_keeps(tiny_model, tiny_data, tmp_path):
    """Resumed from step_2 with --save_total_limit 2 and step_1, step_2 on disk: rotation never removes the
    resumed-from step_2, so at the peak 2 kept + 1 just written + step_2 are on disk: 2 more than now."""
    out = str(tmp_path / "out")
    lp = Loop(small_args(tiny_model, tiny_data, out, checkpointing_steps=1, save_total_limit=2))
    root = os.path.join(out, "checkpoints")
    for step in (1, 2):
        os.makedirs(os.path.join(root, f"step_{step}"))
        storage.write_json(os.path.join(root, f"step_{step}", ckpt.STATE_FILE), {"state": {"global_step": step}})
    lp.checkpointer.resume_path, lp.max_steps = os.path.join(root, "step_2"), 8
    assert lp.checkpointer.checkpoints_held() == 2
    lp.checkpointer.resume_path = None
    lp.checkpointer._clear_earlier = True  # a new run over them: 2 kept + the one just written
    assert lp.checkpointer.checkpoints_held() == 3


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tiny_model, tiny_data, tmp_path, monkeypatch):
    """save_state writes step_4's files, then the disk is full (ENOSPC): one error naming step_4,
    step_2 still verifies, nothing half-written is left. Also: the size estimate is near the truth."""
    from accelerate import Accelerator

    out = str(tmp_path / "out")
    real_save, calls = Accelerator.save_state, []

    def save_state(self, output_dir=None, **kw):
        calls.append(output_dir)
        result = real_save(self, output_dir, **kw)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return result

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    lp = Loop(small_args(tiny_model, tiny_data, out, checkpointing_steps=2))
    with pytest.raises(UserError) as e:
        lp.fit()
    lp.checkpointer.release()
    root = os.path.join(out, "checkpoints")
    msg = str(e.value)
    assert f"could not write checkpoint {os.path.join(root, 'step_4')} ([Errno 28] No space left on device)" in msg
    assert "earlier checkpoints are intact" in msg and "\n" not in msg, msg
    assert sorted(os.listdir(root)) == ["step_2"]  # no .tmp-step_4
    assert checkpoint_folders.verify_checkpoint(os.path.join(root, "step_2")) is None
    one, best = checkpoint_folders.save_sizes(lp.model)
    assert 0.9 < storage.tree_size(os.path.join(root, "step_2")) / one < 1.2
    # the first checkpoint, in torch's words for a full disk (no errno): said as such, with the space free there; it
    # claimed "earlier checkpoints are intact" of none and named no full disk (audit66 d2)
    def torch_full(self, output_dir=None, **kw):
        real_save(self, output_dir, **kw)
        monkeypatch.setattr(ckpt, "free_space", lambda path: 0)  # (the start's check of the room saw enough)
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(Accelerator, "save_state", torch_full)
    lp = Loop(small_args(tiny_model, tiny_data, str(tmp_path / "first"), checkpointing_steps=2))
    with pytest.raises(UserError) as e:
        lp.fit()
    lp.checkpointer.release()
    assert str(e.value) == (f"could not write checkpoint {os.path.join(tmp_path, 'first', 'checkpoints', 'step_2')} "
                            f"(basic_ios::clear: iostream error; 0 kB free there); free space or fix permissions in "
                            f"--output_dir (there is no earlier checkpoint).")

    def failing_disk(self, output_dir=None, **kw):  # the listing of checkpoints/ fails too (EIO, a stale NFS handle)
        def eio(root):
            raise OSError(errno.EIO, "Input/output error", root)

        monkeypatch.setattr(ckpt, "list_checkpoints", eio)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Accelerator, "save_state", failing_disk)
    monkeypatch.setattr(ckpt, "free_space", storage.free_space)  # (the room as it is, for the start's check)
    lp = Loop(small_args(tiny_model, tiny_data, str(tmp_path / "eio"), checkpointing_steps=2))
    with pytest.raises(UserError) as e:  # the save's error in one line (the listing's escaped as a traceback: r2 R1)
        lp.fit()
    lp.checkpointer.release()
    assert str(e.value) == (f"could not write checkpoint {tmp_path / 'eio' / 'checkpoints' / 'step_2'} ([Errno 5] "
                            f"Input/output error); free space or fix permissions in --output_dir (earlier "
                            f"checkpoints, if any, were not touched).")


def test_a_bug_while_saving_keeps_its_traceback_not_a_disk_message(tiny_model, tiny_data, tmp_path, monkeypatch):
    """Only filesystem failures become the "free space" line; anything else raised while saving is a
    bug (an FSDP DTensor error showed up as "free space or fix permissions" before) and propagates."""
    from accelerate import Accelerator

    def save_state(self, output_dir=None, **kw):
        raise RuntimeError("Attempted to access the data pointer on an invalid python storage.")

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    lp = Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out"), checkpointing_steps=2))
    with pytest.raises(RuntimeError, match="invalid python storage") as e:
        lp.fit()
    lp.checkpointer.release()
    assert not isinstance(e.value, UserError)
    assert os.listdir(os.path.join(str(tmp_path / "out"), "checkpoints")) == []  # the temporary folder is gone


@pytest.mark.parametrize("exc, storage", [
    (OSError(28, "No space left on device"), True),
    (RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/3"), True),
    (Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left" })'), True),
    (Exception("Error while serializing: I/O error: File too large (os error 27)"), True),  # ulimit -f
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 487424 vs 487312"), True),
    (RuntimeError("Attempted to access the data pointer on an invalid python storage."), False),
    (KeyError("model.embeddings.weight"), False),
    (ConnectionError(104, "Connection reset by peer"), False),  # an OSError, but not the disk
])
def test_is_storage_error(exc, storage):
    from loop.errors import is_storage_error

    assert is_storage_error(exc) is storage
    try:  # a library that wraps the OSError keeps it as the cause
        raise ValueError("save failed") from exc
    except ValueError as wrapped:
        assert is_storage_error(wrapped) is storage


def test_free_space_of_a_folder_not_made_yet(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr("shutil.disk_usage", lambda path: asked.append(path) or Usage(1, 0, 1))
    assert storage.free_space(str(tmp_path / "a" / "b" / "c")) == 1
    assert asked == [str(tmp_path)]


# ---------------------------------------------------------------- a quiet predict
def saved_model(tiny_model, folder):
    """A model folder like best/: the tiny config with a 2-label head, random weights, the tokenizer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_model, num_labels=2, id2label={0: "NEG", 1: "POS"})
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def test_predict_prints_only_json_lines(tmp_path, tiny_model, capfd):
    from loop import predict

    model = saved_model(tiny_model, str(tmp_path / "model"))
    from transformers.utils import logging as tlogging

    tlogging.enable_progress_bar()  # as in a fresh process: an earlier test in this one may have quieted it
    tlogging.set_verbosity_warning()
    capfd.readouterr()
    predict.run(["--model", model, "a good film", "a bad film"])
    got = capfd.readouterr()
    rows = [json.loads(line) for line in got.out.splitlines()]  # every line is JSON
    assert [r["text"] for r in rows] == ["a good film", "a bad film"], got.out
    assert "Loading" not in got.err and "\r" not in got.err and "%|" not in got.err, got.err


def test_predict_from_python_is_as_quiet_as_loop_predict_and_puts_the_bars_back(tmp_path, tiny_model, capfd):
    """loop.predict.predict() (a notebook) printed transformers' "Loading weights" bar on stderr, which loop-predict
    does not (helper nb F9); the libraries' settings are the caller's again after it."""
    from transformers.utils import logging as tlogging

    from loop import predict

    model = saved_model(tiny_model, str(tmp_path / "model"))
    tlogging.enable_progress_bar()  # as in a fresh process
    tlogging.set_verbosity_warning()
    capfd.readouterr()
    rows = predict.predict(model, ["a good film", "a bad film"])
    got = capfd.readouterr()
    assert [sorted(r) for r in rows] == [["label", "score"]] * 2
    assert "Loading" not in got.err and "%|" not in got.err and got.out == "", got.err
    assert tlogging.is_progress_bar_enabled() and tlogging.get_verbosity() == tlogging.WARNING


@pytest.mark.slow  # predict.py's load bar through a real process, ~13 s
def test_predict_verbose_brings_the_load_bar_back(tmp_path, tiny_model):
    model = saved_model(tiny_model, str(tmp_path / "model"))
    proc = run_cli(["--model", model, "--verbose", "fine"], script="loop/predict.py", how="python")
    assert "Loading weights" in proc.stderr, proc.stderr
    assert [json.loads(line)["text"] for line in proc.stdout.splitlines()] == ["fine"]
    # and quiet without it, in a process of its own (transformers' modeling code imported late, as for a user)
    proc = run_cli(["--model", model, "fine"], script="loop/predict.py", how="python", fresh=True)
    assert proc.stderr == "", proc.stderr
    assert [json.loads(line)["text"] for line in proc.stdout.splitlines()] == ["fine"]


# ---------------------------------------------------------------- progress lines in a log file
def test_plain_progress_lines_at_most_every_n_seconds():
    now, lines = [100.0], []
    bar = PlainProgress(total=1563, initial=100, desc="epoch 2", every=30, clock=lambda: now[0], out=lines.append)
    for _ in range(20):  # 20 batches in 29 s: too soon for a line
        now[0] += 29 / 20
        bar.update()
    assert lines == []
    now[0] += 1.0  # 30 s, 21 batches after the start
    bar.update()
    assert lines == ["epoch 2: 121/1563 batches (8%), 0.7 batches/s, eta 34m20s"], lines
    for _ in range(10):
        now[0] += 1.0
        bar.update()
    assert len(lines) == 1  # the next one is due 30 s after the last
    bar.clear()  # a mid-epoch evaluation of 600 s: not training time
    now[0] += 600
    bar.unpause()
    now[0] += 20
    bar.update()
    assert lines[-1] == "epoch 2: 132/1563 batches (8%), 0.533 batches/s, eta 44m43s", lines  # 32 in 60 s, not 660
    bar.clear()
    bar.close()
    now[0] += 60
    bar.update()
    assert len(lines) == 2  # closed: silent


def test_progress_is_tqdm_on_a_terminal_and_lines_in_a_file(monkeypatch, tmp_path, capsys):
    from types import SimpleNamespace

    from tqdm.auto import tqdm

    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    acc = SimpleNamespace(is_local_main_process=True, is_main_process=True)
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), acc)
    monkeypatch.setattr("sys.stderr", Terminal())
    bar = runlog.progress(total=5, desc="epoch 1")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.undo()
    monkeypatch.setenv("LOOP_PROGRESS_S", "0")  # no lines at all
    assert list(runlog.progress(range(3), desc="eval")) == [0, 1, 2]
    monkeypatch.setenv("LOOP_PROGRESS_S", "0.0001")
    seen = []
    for i in runlog.progress(range(3), desc="eval"):
        seen.append(i)
        time.sleep(0.002)  # every batch takes longer than the interval (a bare loop can beat the clock's tick)
    assert seen == [0, 1, 2]
    out = capsys.readouterr().out
    assert out.startswith("[loop] eval: 1/3 batches (33%)") and out.count("[loop] eval:") == 3, out
    assert "\r" not in out


def test_progress_seconds_from_the_environment(monkeypatch):
    from loop.logs import PROGRESS_S, progress_seconds

    monkeypatch.setenv("LOOP_PROGRESS_S", "2.5")
    assert progress_seconds() == 2.5
    monkeypatch.setenv("LOOP_PROGRESS_S", "0")
    assert progress_seconds() == 0
    for bad in ("30s", "-1", "nan", "inf"):
        monkeypatch.setenv("LOOP_PROGRESS_S", bad)
        with pytest.warns(UserWarning, match="is not a number of seconds"):
            assert progress_seconds() == PROGRESS_S


def test_nonfinite_patience_counts_consecutive_batches_of_one_rank_not_of_all():
    """Two ranks that each saw 2 NaN losses in a row (fp16 overflows the scaler skips) have not seen 4
    in a row: the run goes on. 3 in a row on a rank stops it, naming the count and the step."""
    import torch

    from loop.logs import NONFINITE_PATIENCE, LossMeter

    class TwoEqualRanks:  # accelerator.reduce as two ranks holding the same values would give it
        mixed_precision = "fp16"

        def reduce(self, t, reduction):
            assert reduction == "sum"  # the one reduction every accelerate version has
            return t * 2

    meter = LossMeter("cpu")
    for loss in (1.0, float("nan"), float("nan"), 3.0):
        meter.add(torch.tensor(loss))
    assert NONFINITE_PATIENCE == 3
    assert meter.take(TwoEqualRanks(), step=4) == pytest.approx(2.0)  # the finite losses' mean
    for loss in (float("nan"),) * 3:
        meter.add(torch.tensor(loss))
    with pytest.raises(UserError, match="NaN or infinite for 3 or more consecutive batches by step 7; lower "
                                        "--learning_rate or use bf16 instead of fp16"):
        meter.take(TwoEqualRanks(), step=7)
    # a log line whose every loss was non-finite (fewer than the patience) had no loss to average: it said 0.0, a
    # perfect loss in the log and the trackers for steps that diverged (audit61); NaN says what they were
    meter = LossMeter("cpu")
    for loss in (float("nan"), float("inf")):
        meter.add(torch.tensor(loss))
    assert math.isnan(meter.take(TwoEqualRanks(), step=9))
    meter.add(torch.tensor(0.5))
    assert meter.take(TwoEqualRanks(), step=10) == 0.5


def test_a_closed_stdout_pipe_does_not_kill_the_run(monkeypatch):
    """`... | head`, or a `| tee` whose ssh session dropped: writing a [loop] line raises BrokenPipeError.
    The console is gone, the run is not: later lines go to /dev/null."""
    import sys

    from loop.logs import say

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    say("step=1 loss=0.7")  # no exception
    assert sys.stdout.name == os.devnull
    say("step=2 loss=0.6")


def test_predict_refuses_an_empty_text_argument():
    """An empty argument has nothing to classify (a decoder's tokenizer gives it zero tokens): one line."""
    import argparse

    from loop import predict

    with pytest.raises(UserError, match="text 2 of the arguments is empty"):
        predict.load_texts(argparse.Namespace(texts=["a fine film", " "], file=None))


def test_the_closing_samples_per_second_counts_a_short_last_batch_as_it_is(tiny_model, tiny_data, tmp_path, capsys):
    """70 rows in batches of 16: 4 of 16 and one of 6. The closing 'training N samples/s' counted every batch as 16
    (80 rows, +14%); it counts the rows trained, and the line's rate is those over the training time."""
    lp = Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out"), max_train_samples=70, num_train_epochs=2))
    lp.fit()
    assert (lp.runlog.train_batches, lp.runlog.train_samples) == (10, 140)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[loop] done in")][0]
    rate = float(line.split("training ")[1].split(" samples/s")[0])
    assert rate == pytest.approx(140 / lp.runlog.train_seconds, rel=1e-3, abs=0.06), line


def test_two_labels_say_which_class_f1_precision_and_recall_score(tiny_model, tiny_data, tmp_path):
    """With two labels f1, precision and recall are those of id 1, which no number named: 'Positive'/'negative'
    sorts 'negative' second, a trained head may hold POSITIVE first. The start-up names it."""
    proc = run_cli(tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), max_train_samples=32, max_eval_samples=16,
                             num_train_epochs=1, metric="f1", metrics="accuracy,recall"), how="python")
    said = [line for line in proc.stdout.splitlines() if "of the class" in line]
    assert said == ["[loop] f1, recall: of the class 'POSITIVE' (id 1) against 'NEGATIVE' (f1_macro: the mean over "
                    "both)"], proc.stdout[-2000:]
    proc = run_cli(tiny_args(tiny_model, tiny_data, str(tmp_path / "acc"), max_train_samples=32, max_eval_samples=16,
                             num_train_epochs=1), how="python")
    assert "of the class" not in proc.stdout  # accuracy alone: no class to name


def test_the_opening_line_lists_at_most_twenty_label_names(tmp_path):
    """With 10,000 labels the opening line (and --eval_only's) listed every name: a 100 KB line."""
    from types import SimpleNamespace

    from loop.logs import SHOWN_LABELS

    acc = SimpleNamespace(is_local_main_process=True, is_main_process=True, num_processes=2)
    runlog = RunLog(parse_args(["--output_dir", str(tmp_path)]), acc)

    def line(names, regression=False):
        data = SimpleNamespace(eval=[0] * 5, label_names=names)
        return runlog.examples_and_labels(SimpleNamespace(data=data, regression=regression))

    assert line(["NEG", "POS"]) == "5 evaluation examples, labels ['NEG', 'POS'], 2 process(es)"
    many = [f"L{i:05d}" for i in range(10_000)]
    text = line(many)
    assert text.startswith("5 evaluation examples, labels ['L00000', 'L00001', ")
    assert text.endswith(f"'L{SHOWN_LABELS - 1:05d}', ... and {10_000 - SHOWN_LABELS} more], 2 process(es)")
    assert len(text) < 400
    assert line(["score"], regression=True) == "5 evaluation examples, regression target 'score', 2 process(es)"


def test_accelerates_note_on_tied_weights_at_each_checkpoint_is_quiet(capsys, caplog):
    """audit52: every checkpoint of an encoder-decoder (BART's and T5's shared embeddings) printed accelerate's
    '[RANK 0] Removed shared tensor {...} while saving. This should be OK, but check by verifying ...': the tied copy
    is tied again when the model is built, and a resume is exact. quiet_libraries drops that note (and only it);
    --verbose keeps it (quiet_libraries is not called)."""
    import logging

    import torch
    from accelerate import PartialState
    from accelerate.utils.other import clean_state_dict_for_safetensors

    from loop.logs import quiet_libraries

    PartialState(cpu=True)
    shared = torch.zeros(3)
    other = logging.getLogger("accelerate.utils.other")
    quiet_libraries()
    with caplog.at_level(logging.WARNING, logger="accelerate.utils.other"):
        kept = clean_state_dict_for_safetensors({"encoder.embed": shared, "decoder.embed": shared})
        other.warning("another accelerate warning")
    assert list(kept) == ["encoder.embed"]  # (the copy was dropped: the note's occasion)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["another accelerate warning"], said


@pytest.mark.parametrize("examples, processes, steps, said", [
    (3, 2, 1, "1 optimizer step per epoch of all 3 examples (a full step would hold 2: 1 per device x 2 process(es)"),
    (2, 2, 1, "1 optimizer step per epoch of 2 examples (1 per device x 2 process(es)"),
    (1, 2, 1, "1 optimizer step per epoch of all 1 examples (a full step would hold 2: 1 per device x 2 process(es)"),
    (5, 2, 2, "2 optimizer steps per epoch of 2 examples (1 per device x 2 process(es)"),
])
def test_the_opening_line_says_what_an_epoch_of_one_step_holds(tmp_path, capsys, examples, processes, steps, said):
    """audit63 u5: 3 examples in batches of 1 on 2 processes train as one step of all 3 (the last round of 1 example
    merges into the round before, loaders.merges_last_round); the opening line said "1 optimizer step per epoch of
    2 examples". An epoch of one step holds all its examples, more or fewer than a full step's."""
    from types import SimpleNamespace

    cfg = parse_args(["--output_dir", str(tmp_path), "--per_device_train_batch_size", "1"])
    acc = SimpleNamespace(is_main_process=True, is_local_main_process=True, num_processes=processes,
                          mixed_precision="no")
    log = RunLog(cfg, acc)
    log.examples_and_labels = lambda loop: "1 evaluation examples"
    log.optimization_line = lambda loop: "optimizer: AdamW"
    loop = SimpleNamespace(data=SimpleNamespace(train=range(examples), label_names=["a", "b", "c"]),
                           steps_per_epoch=steps, max_steps=steps, regression=False, multi_label=False)
    log.describe_run(loop)
    assert said in capsys.readouterr().out


def test_datasets_first_imported_by_a_run_is_as_a_fresh_import_has_it_after(tmp_path):
    """audit64 t2: `from loop import Loop` (the README's in-process use) does not import datasets; the run's
    quiet_libraries did, and with nothing recorded of it, datasets stayed at ERROR without progress bars for the
    rest of the notebook. What quiet_libraries changes is put back as a fresh import has it."""
    code = ("import sys; from loop.logs import library_settings, quiet_libraries, restore_libraries\n"
            "assert 'datasets' not in sys.modules\n"
            "settings = library_settings(); quiet_libraries(); restore_libraries(settings)\n"
            "import datasets; print(datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled())\n")
    import subprocess
    import sys

    from conftest import env

    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import datasets

    assert proc.stdout.split() == [str(datasets.logging.WARNING), "True"]


def test_a_console_that_cannot_show_a_character_escapes_it_and_keeps_every_later_line(monkeypatch):
    """PYTHONIOENCODING=ascii, or a redirected stdout under Windows' cp1252: the first line with a label or path it
    cannot encode (UnicodeEncodeError, a ValueError) was taken for a closed console, and every later line of the
    run went to /dev/null (helper env F1). It is escaped; the console stays."""
    import io

    from loop.logs import say

    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", console)
    say("labels ['négatif', '正面']")
    say("done")
    assert sys.stdout is console
    assert raw.getvalue().decode() == "[loop] labels ['n\\xe9gatif', '\\u6b63\\u9762']\n[loop] done\n"


def test_a_closed_stdout_leaves_training_quiet_and_prediction_refused(monkeypatch, tiny_model, tmp_path):
    """Started with `>&-` (sys.stdout None): a run's first console line raised AttributeError (a traceback, exit 1,
    no run), and loop-predict dropped every prediction with exit 0 (helper env F6)."""
    from loop import predict
    from loop.errors import UserError
    from loop.logs import say

    model = saved_model(tiny_model, str(tmp_path / "model"))
    monkeypatch.setattr(sys, "stdout", None)
    say("a line nobody reads")
    with pytest.raises(UserError, match=r"^standard output is closed \(or not open for writing\), so the predictions "):
        predict.run(["--model", model, "fine"])


@pytest.mark.parametrize("command", ["loop/train.py", "loop/predict.py", "loop/accelerate_launch.py", "-m loop.train",
                                     "-m loop", "loop-train", "loop-predict"])
def test_a_deleted_current_folder_is_one_line_not_a_traceback(tmp_path, command):
    """A shell still in a folder deleted since (a cleaned scratch folder): every command ended in a FileNotFoundError
    traceback (os.path.abspath, or transformers' import) before anything of loop ran (helper env F5; rev4 F1: the
    installed commands and `python -m` too)."""
    import shlex
    import subprocess

    if command.startswith("loop-"):
        program = os.path.join(os.path.dirname(sys.executable), command)
        if not os.path.isfile(program):
            pytest.skip(f"{command} is not installed beside {sys.executable}")
        argv = [program]
    else:
        argv = [sys.executable] + (command.split() if command.startswith("-m") else [os.path.join(ROOT, command)])
    gone = tmp_path / "gone"
    gone.mkdir()
    line = " ".join(map(shlex.quote, argv + ["--help"]))
    env = dict(os.environ, PYTHONPATH=ROOT)  # (-m: this checkout's loop, from a folder that is no more)
    proc = subprocess.run(["sh", "-c", f"cd {shlex.quote(str(gone))} && rmdir {shlex.quote(str(gone))} && exec {line}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr[-2000:]
    assert proc.stderr == "error: the current folder no longer exists; cd into one that does and run again.\n"


def test_a_model_folder_this_user_cannot_read_is_named_so(tmp_path, tiny_model, monkeypatch):
    """Another user's best/ (mode 700, or 711): loop-predict said it "is not a model folder (no config.json)", or
    ended in a PermissionError traceback from listing it (helper env nits)."""
    from loop import predict
    from loop.errors import UserError

    model = saved_model(tiny_model, str(tmp_path / "model"))
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path == model else real(path, mode, **kw))
    with pytest.raises(UserError) as refused:
        predict.run(["--model", model, "fine"])
    assert str(refused.value) == (f"--model '{model}' cannot be read (permission denied); fix its permissions, or run "
                                  f"as a user who may read it.")


def test_importing_loop_from_a_deleted_folder_raises_an_import_error_not_an_exit(tmp_path):
    """`import loop` in a notebook or a sweep driver whose folder was deleted: the commands' one line and exit 2 ended
    the importing process (SystemExit past `except Exception`; rev5 F2). A library import raises ImportError with
    that line."""
    import shlex
    import subprocess

    gone = tmp_path / "gone"
    gone.mkdir()
    code = "try:\n    import loop\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    proc = subprocess.run(["sh", "-c", f"cd {shlex.quote(str(gone))} && rmdir {shlex.quote(str(gone))} && exec "
                           f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr[-2000:]
    assert proc.stdout == ("ImportError: loop: the current folder no longer exists; cd into one that does and run "
                           "again.\n")


def test_a_link_to_nothing_is_named_as_a_link_for_every_path_option(tmp_path, tiny_model, tiny_data, monkeypatch):
    """A symbolic link whose target was moved or deleted ('best' -> a run folder since removed): as --model it was
    looked for on the Hub ('best' is a valid Hub id; offline, "not in the Hugging Face cache"), as a data file it
    "does not exist" (audit72's nits). Each path option names the link and where it points."""
    from loop import predict

    monkeypatch.chdir(tmp_path)
    os.symlink(str(tmp_path / "moved"), "best")
    os.symlink(str(tmp_path / "moved.jsonl"), "train.jsonl")

    def refusal(**over):
        with pytest.raises(UserError) as refused:
            Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out"), **over)).fit()
        return str(refused.value)

    said = "is a link to '{}', which does not exist; point the link at the {}, or pass the {} itself."
    assert refusal(model_name_or_path="best") == "--model_name_or_path 'best' " + said.format(tmp_path / "moved",
                                                                                             "folder", "folder")
    assert refusal(tokenizer_name="best") == "--tokenizer_name 'best' " + said.format(tmp_path / "moved", "folder",
                                                                                     "folder")
    assert refusal(train_file="train.jsonl") == "--train_file 'train.jsonl' " + said.format(tmp_path / "moved.jsonl",
                                                                                          "file", "file")
    with pytest.raises(UserError) as refused:
        predict.run(["--model", "best", "fine"])
    assert str(refused.value) == "--model 'best' " + said.format(tmp_path / "moved", "folder", "folder")


def test_a_model_folder_this_user_cannot_list_is_named_so_by_training_too(tmp_path, tiny_model, tiny_data, monkeypatch):
    """A model folder of mode 711 (enter, not list: config.json can be read, its folder not listed) stopped training in
    "could not load a tokenizer ...; pass a folder with tokenizer files via --tokenizer_name", which is not the fix
    (audit72's env nits); a --tokenizer_name folder likewise. Both are named as unreadable before anything loads."""
    real = os.access
    shut = {tiny_model}
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path in shut else real(path, mode, **kw))
    with pytest.raises(UserError) as refused:
        Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out"))).fit()
    assert str(refused.value) == (f"--model_name_or_path '{tiny_model}' cannot be read (permission denied); fix its "
                                  f"permissions, or run as a user who may read it.")
    tokenizer = saved_model(tiny_model, str(tmp_path / "tokenizer"))
    shut = {tokenizer}
    with pytest.raises(UserError) as refused:
        Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out2"), tokenizer_name=tokenizer)).fit()
    assert str(refused.value) == (f"--tokenizer_name '{tokenizer}' cannot be read (permission denied); fix its "
                                  f"permissions, or run as a user who may read it.")


def test_a_pattern_in_a_folder_this_user_cannot_list_says_so(tmp_path, monkeypatch):
    """'shards/train-*.jsonl' in a folder of mode 733 (another user's, enter only) "matched no file; check the
    pattern" (audit72's env nits): the pattern was right, the folder cannot be listed."""
    from loop.config import data_files

    shards = tmp_path / "shards"
    shards.mkdir()
    real = os.access
    shut = (str(shards), os.curdir)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path in shut else real(path, mode, **kw))
    with pytest.raises(UserError) as refused:
        data_files(str(shards / "train-*.jsonl"), "--train_file")
    assert str(refused.value) == (f"--train_file '{shards}/train-*.jsonl' matches no file that can be seen: the folder "
                                  f"'{shards}' cannot be listed (permission denied); fix its permissions, or run as a "
                                  f"user who may read it.")
    monkeypatch.chdir(shards)
    with pytest.raises(UserError) as refused:
        data_files("train-*.jsonl", "--train_file")
    assert str(refused.value) == ("--train_file 'train-*.jsonl' matches no file that can be seen: the folder '.' "
                                  "cannot be listed (permission denied); fix its permissions, or run as a user who "
                                  "may read it.")


@pytest.mark.parametrize("stderr", ["closed", "read-only"])
@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_loop_predict_with_its_stderr_closed_prints_its_lines_and_nothing_else(tmp_path, tiny_model, stderr):
    """`loop-predict ... 2>&-`: under pyenv's shims (their script left on descriptor 2, read-only) every note on
    stderr failed with EBADF and the model "could not be loaded" (exit 2, nothing printed). With descriptor 2 closed
    the next file opened would take it (it is /dev/null now; its lines were right before too). Started either way,
    it prints its prediction lines on stdout, only them, and exits 0, and the file on descriptor 2 is untouched."""
    import subprocess

    model = saved_model(tiny_model, str(tmp_path / "model"))
    with open(os.path.join(model, "tokenizer_config.json")) as f:
        config = json.load(f)
    config["padding_side"] = "left"  # a note on stderr: "padding on the right as training does"
    with open(os.path.join(model, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    script = str(tmp_path / "script")
    with open(script, "w") as f:
        f.write("read-only, like a shim's script\n")
    held = os.open(script, os.O_RDONLY)

    def on_stderr():
        if stderr == "closed":
            os.close(2)
        else:
            os.dup2(held, 2)

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "loop", "predict.py"), "--model", model, "a fine film"],
                          stdout=subprocess.PIPE, text=True, preexec_fn=on_stderr, env=env, timeout=300)
    os.close(held)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["text"] == "a fine film", proc.stdout
    with open(script) as f:
        assert f.read() == "read-only, like a shim's script\n"


def test_loop_predict_with_a_stdout_it_cannot_write_is_refused_not_silent(tmp_path, tiny_model):
    """A stdout open but not for writing (the read end of a pipe): descriptor 1 becomes /dev/null like a closed one,
    and the predictions then went there, exit 0 (review rev F2); it is refused as a closed stdout is."""
    import subprocess

    model = saved_model(tiny_model, str(tmp_path / "model"))
    read_end, write_end = os.pipe()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=ROOT)
    try:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "loop", "predict.py"), "--model", model, "fine"],
                              stdout=read_end, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("error: standard output is closed (or not open for writing), so the "
                                                   "predictions have nowhere to go"), proc.stderr[-1000:]


def test_a_pattern_that_matches_a_link_to_nothing_names_it(tmp_path):
    """'shards/train-*.jsonl' where one shard's link points at a file moved away: the run trained on the other
    shards, saying nothing (review rev F5)."""
    from loop.config import data_files

    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        (shards / f"train-{i}.jsonl").write_text('{"text": "a", "label": "x"}\n')
    os.symlink(str(tmp_path / "moved.jsonl"), str(shards / "train-2.jsonl"))
    with pytest.raises(UserError) as refused:
        data_files(str(shards / "train-*.jsonl"), "--train_file")
    assert str(refused.value) == (f"--train_file '{shards}/train-*.jsonl' matches '{shards}/train-2.jsonl', a link to "
                                  f"'{tmp_path}/moved.jsonl', which does not exist; point the link at the file, "
                                  f"remove it, or narrow the pattern.")


def test_a_path_under_a_folder_this_user_cannot_enter_names_that_folder(tmp_path, tiny_model, tiny_data, monkeypatch):
    """A model folder or data file in another user's home (mode 700) was "not a folder (nor a Hub name ...)" or
    "does not exist" (review rev F6): os.stat says permission denied, and the folder above that cannot be entered
    is named."""
    from loop import predict

    shut = tmp_path / "home"
    model, data = str(shut / "model"), str(shut / "train.jsonl")
    real_stat, real_access = os.stat, os.access

    def stat(path, *args, **kwargs):
        if str(path).startswith(str(shut) + os.sep):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path == str(shut) else real_access(path, mode,
                                                                                                             **kw))
    said = "cannot be reached: the folder '{}' above it cannot be entered (permission denied); fix its permissions, " \
           "or run as a user who may read it."
    for over, flag, path in ((dict(model_name_or_path=model), "--model_name_or_path", model),
                             (dict(train_file=data), "--train_file", data)):
        with pytest.raises(UserError) as refused:
            Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out"), **over)).fit()
        assert str(refused.value) == f"{flag} '{path}' " + said.format(shut)
    with pytest.raises(UserError) as refused:
        predict.run(["--model", model, "fine"])
    assert str(refused.value) == f"--model '{model}' " + said.format(shut)


def test_the_console_mend_leaves_a_system_without_fcntl_alone(monkeypatch):
    """Windows has no fcntl: every command failed with its ModuleNotFoundError before running (review rev F1)."""
    from loop import errors

    monkeypatch.setitem(sys.modules, "fcntl", None)  # (an import of it then raises ImportError)
    before = sys.stdout, sys.stderr
    errors._closed_consoles_to_null()
    assert (sys.stdout, sys.stderr) == before


def test_a_link_into_a_folder_this_user_cannot_enter_names_that_folder_not_a_missing_target(tmp_path, tiny_model,
                                                                                          tiny_data, monkeypatch):
    """A link in one's own folder to a run or shard in another user's home (mode 700): the target is there, out of
    reach, and it was said not to exist (review rev3 F1, audit73). Named as out of reach, by the folder above the
    target that cannot be entered."""
    from loop.config import data_files

    shut = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    os.symlink(str(shut / "best"), "best")
    os.symlink(str(shut / "t.jsonl"), "t.jsonl")
    real_stat, real_access = os.stat, os.access

    def stat(path, *args, **kwargs):
        if os.path.realpath(path).startswith(str(shut) + os.sep) and kwargs.get("follow_symlinks", True):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if path == str(shut) else real_access(path, mode,
                                                                                                             **kw))
    said = f"cannot be reached: the folder '{shut}' above it cannot be entered (permission denied)"
    with pytest.raises(UserError) as refused:
        Loop(small_args(tiny_model, tiny_data, str(tmp_path / "out"), model_name_or_path="best")).fit()
    assert str(refused.value).startswith(f"--model_name_or_path 'best' {said}")
    for pattern in ("t.jsonl", "t*.jsonl"):
        with pytest.raises(UserError) as refused:
            data_files(pattern, "--train_file")
        assert str(refused.value).startswith(f"--train_file 't.jsonl' {said}")


def test_a_loop_of_links_is_named_so(tmp_path, monkeypatch):
    """A link that leads back to itself was 'a link to ..., which does not exist' (review rev3 F4, audit73)."""
    from loop.config import data_files

    monkeypatch.chdir(tmp_path)
    os.symlink("self.jsonl", "self.jsonl")
    with pytest.raises(UserError) as refused:
        data_files("self.jsonl", "--train_file")
    assert str(refused.value) == ("--train_file 'self.jsonl' is a link in a loop of links, which never reaches a file; "
                                  "point it at the file, or pass the file itself.")
