"""Tests written by a mutation audit of loop/checkpoint.py (audit64 m3): each one fails on a small change of the
code that a user would notice (a checkpoint lost to rotation, a damaged file not seen, another training-loss log
after a resume) and passes on the code as it is."""

import os
import re
import shutil

import pytest

from conftest import FAULTS, run_cli, tiny_args, train_logs
from loop import checkpoint_folders
from loop import checkpoint as ckpt
from loop import storage
from loop.errors import EXIT_PREEMPTED, UserError


def make_ckpt(root, step):
    path = os.path.join(root, f"step_{step}")
    os.makedirs(path)
    with open(os.path.join(path, "model.safetensors"), "w") as f:
        f.write(str(step))
    storage.write_json(os.path.join(path, ckpt.STATE_FILE), {"state": {"global_step": step}})
    return path


def test_rotation_keeps_the_resumed_checkpoint_when_its_path_goes_through_a_link(tmp_path):
    """The resume path written through a link to the run folder, --output_dir its real path: the checkpoint
    resumed from is still protected from --save_total_limit (the protected paths are compared resolved, both
    sides; mutant: the protected ones taken as spelled)."""
    real = tmp_path / "real"
    root = str(real / "checkpoints")
    os.makedirs(root)
    for step in (2, 4, 6, 8):
        make_ckpt(root, step)
    (tmp_path / "link").symlink_to(real)
    resumed = str(tmp_path / "link" / "checkpoints" / "step_4")
    ckpt.rotate(root, 1, protect=[resumed, os.path.join(root, "step_8")])
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [4, 8]


def test_checksums_cover_the_files_in_subfolders(tmp_path):
    """best/ of a LoRA run holds adapter/, a sharded checkpoint its pytorch_model_fsdp_0/: a file changed there is
    a damaged folder like any other (mutant: only the top-level files checksummed, a corrupted adapter loaded)."""
    folder = tmp_path / "best"
    (folder / "adapter").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"adapter weights")
    sums = ckpt.checksum_tree(str(folder))
    assert set(sums) == {"model.safetensors", os.path.join("adapter", "adapter_model.safetensors")}
    assert ckpt.verify_files(str(folder), sums) is None
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"adapter weightz")
    assert ckpt.verify_files(str(folder), sums) == \
        f"'{os.path.join('adapter', 'adapter_model.safetensors')}' does not match its checksum"


@pytest.mark.slow  # (12 s on 2 cores)
def test_a_checkpoint_between_two_log_lines_resumes_the_same_training_loss_log(tiny_model, tiny_data, tmp_path):
    """Stopped at step 5 with --logging_steps 3: the loss of steps 4 and 5 is in the checkpoint, and the resumed
    run's line at step 6 averages steps 4-6 as the uninterrupted run's does (mutant: the checkpoint kept no loss
    since the last line, and the line at step 6 held step 6's loss alone)."""
    common = dict(max_train_samples=128, num_train_epochs=1, logging_steps=3, max_eval_samples=32)
    base, out = str(tmp_path / "base"), str(tmp_path / "run")
    run_cli(tiny_args(tiny_model, tiny_data, base, **common), how="python")
    args = tiny_args(tiny_model, tiny_data, out, checkpointing_steps=2, **common)
    p = run_cli(args, how="python", check=False, script=FAULTS, LOOP_TEST_SIGNAL_AT_STEP=5)
    assert p.returncode == EXIT_PREEMPTED, p.stderr[-3000:]
    info = ckpt.read_state(os.path.join(out, "checkpoints", "step_5"))
    assert info["state"]["global_step"] == 5
    # the epochs' length a resume compares (check_epoch_length): 128 examples in batches of 16 (mutant: not recorded,
    # and a resume with another batch sampler skipped other batches than the ones trained)
    assert info["epoch_batches"] == 8
    run_cli(args + ["--resume_from_checkpoint", "latest"], how="python")
    got, want = train_logs(out), train_logs(base)
    assert [r["step"] for r in got] == [r["step"] for r in want] and 6 in [r["step"] for r in got]
    for g, w in zip(got, want):
        assert abs(g["loss"] - w["loss"]) <= 1e-5 * abs(w["loss"]), (g, w)


def test_a_checkpoint_saved_while_the_body_is_frozen_resumes_it_frozen(tiny_model, tiny_data, tmp_path, monkeypatch):
    """The body frozen in build_model and unfrozen by a hook after step 3; resumed from step 2, the body stays
    frozen for step 3 as in the uninterrupted run, and the run ends with the same weights (mutant: the checkpoint
    recorded no frozen parameters, and the resume unfroze the body a step early)."""
    import torch

    import loop
    from fault_train import UnfreezeAtStep

    monkeypatch.setenv("LOOP_TEST_UNFREEZE_AT_STEP", "3")
    over = dict(max_train_samples=64, max_eval_samples=16, num_train_epochs=1, checkpointing_steps=2,
                config_overrides="dropout=0.0,attention_dropout=0.0,seq_classif_dropout=0.0")
    out, again = str(tmp_path / "whole"), str(tmp_path / "again")
    whole = UnfreezeAtStep(loop.parse_args(tiny_args(tiny_model, tiny_data, out, **over)))
    whole.fit()
    assert ckpt.read_state(os.path.join(out, "checkpoints", "step_2"))["frozen"]  # the body, at step 2
    shutil.copytree(out, again)
    resumed = UnfreezeAtStep(loop.parse_args(tiny_args(
        tiny_model, tiny_data, again, resume_from_checkpoint=os.path.join(again, "checkpoints", "step_2"), **over)))
    resumed.fit()
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _log_cutter(tmp_path, warned):
    """A Checkpointer on a stand-in loop, for cut_metrics alone (one process, the main one)."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(output_dir=str(tmp_path))
    stand_in = SimpleNamespace(cfg=cfg, warn=warned.append)
    return ckpt.Checkpointer(stand_in)


def test_a_log_whose_last_line_was_cut_off_loses_that_line_on_resume(tmp_path):
    """A run folder copied while a line was being written: the log holds fewer whole lines than the checkpoint saw
    (one warning), and the cut-off line goes, so the resumed run's first record starts a line of its own (mutant: the
    fragment stayed, and the next record was glued to it: no JSON-lines reader took the log)."""
    warned = []
    c = _log_cutter(tmp_path, warned)
    os.makedirs(c.checkpoints_dir)
    with open(c.metrics_path, "wb") as f:
        f.write(b'{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    c.cut_metrics(os.path.join(c.checkpoints_dir, "step_3"), 3)
    with open(c.metrics_path, "rb") as f:
        assert f.read() == b'{"step": 1}\n{"step": 2}\n'
    assert len(warned) == 1 and "holds 2 whole lines" in warned[0] and "saved after 3" in warned[0], warned
    # a log with more lines than the checkpoint saw: cut back to its count, the cut-off line with the rest
    with open(c.metrics_path, "wb") as f:
        f.write(b'{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')
    c.cut_metrics(os.path.join(c.checkpoints_dir, "step_3"), 2)
    with open(c.metrics_path, "rb") as f:
        assert f.read() == b'{"step": 1}\n{"step": 2}\n'


def test_a_best_folder_of_the_same_step_with_another_score_is_not_the_checkpoints_best(tmp_path):
    """best/ holding the same step's evaluation but another score (the step evaluated again on another timeline,
    a GPU's nondeterminism): not the model the checkpoint calls best, so a resume neither copies it nor names it in
    the summary (mutant: the step alone compared)."""
    best = tmp_path / "best"
    best.mkdir()
    storage.write_json(str(best / "best_metrics.json"), {"epoch": 1, "step": 8, "eval_accuracy": 0.75})
    assert ckpt.best_mismatch(str(best), "accuracy", 0.75, 1, 8) is None
    assert ckpt.best_mismatch(str(best), "accuracy", 0.8125, 1, 8) == \
        "holds another evaluation's model (eval_accuracy=0.75 at epoch 1, step 8)"
    assert ckpt.best_mismatch(str(best), "accuracy", 0.75, 1, 6) is not None  # the same score at another step


def _best_copier(tmp_path):
    from types import SimpleNamespace

    return ckpt.Checkpointer(SimpleNamespace(cfg=SimpleNamespace(output_dir=str(tmp_path / "run"))))


def test_copying_another_runs_best_verifies_the_copy_and_gives_an_older_one_checksums(tmp_path):
    """copy_best: a copy that does not match the source's checksums.json (the source changed since it was checked,
    a bad disk) is refused and leaves no best/ (mutant: published as it was); an older loop's best/ without
    checksums.json gets one, so a later resume can verify it (mutant: published without, never verified again)."""
    c = _best_copier(tmp_path)
    os.makedirs(c.cfg.output_dir)
    old = tmp_path / "older"
    old.mkdir()
    (old / "model.safetensors").write_bytes(b"weights")
    (old / "best_metrics.json").write_text('{"step": 4}')
    assert c.copy_best(str(old)) is False  # nothing to verify it against
    sums = ckpt.read_checksums(c.best_dir)
    assert sums == ckpt.checksum_tree(str(old)) and set(sums) == {"model.safetensors", "best_metrics.json"}
    assert ckpt.verify_files(c.best_dir, sums) is None

    shutil.rmtree(c.best_dir)
    bad = tmp_path / "changed"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"weights")
    storage.write_json(str(bad / ckpt.BEST_CHECKSUMS), ckpt.checksum_tree(str(bad)))
    (bad / "model.safetensors").write_bytes(b"weightz")  # changed after its checksums were written
    with pytest.raises(UserError, match=r"the copy of '.*changed' does not match its checksums \('model.safetensors' "
                                        r"does not match its checksum\)"):
        c.copy_best(str(bad))
    assert not os.path.exists(c.best_dir) and os.listdir(c.cfg.output_dir) == []


def test_overwrite_output_dir_trains_a_finished_run_again_under_auto(tiny_model, tiny_data, tmp_path):
    """A finished run's record makes `auto` with the same options find nothing to do; the message's own advice,
    --overwrite_output_dir, trains it again (mutant: the record answered that too, and the advice did nothing)."""
    from types import SimpleNamespace

    from loop.config import parse_args

    out = str(tmp_path / "run")
    os.makedirs(out)

    def checker(*more):
        cfg = parse_args(tiny_args(tiny_model, tiny_data, out, resume_from_checkpoint="auto") + list(more))
        return ckpt.Checkpointer(SimpleNamespace(cfg=cfg))

    c = checker()
    storage.write_json(c.finished_path, {"step": 12, "finished": "then", "cwd": os.getcwd(),
                                         "options": ckpt.finished_options(c.cfg)})
    said = c.finished_here()
    assert said and f"the run in '{out}' finished at step 12" in said
    assert "--overwrite_output_dir trains it again" in said
    assert checker("--overwrite_output_dir", "true").finished_here() is None


def _older_loops_finished_run(tiny_model, tiny_data, tmp_path):
    """(output_dir, args) of a finished run of 12 steps, checkpoints at 5 and 10, as a loop before 2026-12-03 left
    it: no finish record, its checkpoints without a format."""
    import json

    from loop import Loop, parse_args

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, max_train_samples=96, max_eval_samples=48, num_train_epochs=2,
                     logging_steps=1, checkpointing_steps=5)  # 12 steps: checkpoints at 5 and 10
    Loop(parse_args(args)).fit()
    os.remove(os.path.join(out, ckpt.FINISHED_FILE))
    state = os.path.join(out, "checkpoints", "step_10", ckpt.STATE_FILE)
    with open(state) as f:
        record = json.load(f)
    record.pop("format")  # as an older loop's checkpoint
    storage.write_json(state, record)
    return out, args


def test_an_older_loops_run_killed_while_writing_its_last_best_is_resumed_not_finished(tiny_model, tiny_data,
                                                                                         tmp_path, capsys):
    """A run of a loop that kept no finish record, re-submitted with `auto` in its own folder: its log holds the
    last step's evaluation, but best/ does not hold the log's best evaluation (killed while writing it), so the run
    did not finish: resumed, and best/ written again (mutant: the log alone decided, and best/ stayed wrong; the
    older test's case ran in a copy under another --output_dir, refused before best/ was looked at)."""
    import json

    from loop import Loop, parse_args

    out, args = _older_loops_finished_run(tiny_model, tiny_data, tmp_path)
    best = os.path.join(out, "best")
    with open(os.path.join(best, "best_metrics.json")) as f:
        written = json.load(f)
    storage.write_json(os.path.join(best, "best_metrics.json"), {**written, "step": -1})
    storage.write_json(os.path.join(best, ckpt.BEST_CHECKSUMS), ckpt.checksum_tree(best))
    capsys.readouterr()
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()
    said = "".join(capsys.readouterr())
    assert "resumed from" in said and "finished at step 12" not in said, said[-2000:]


def test_a_new_run_over_a_finished_one_is_not_taken_for_it_when_requeued(tiny_model, tiny_data, tmp_path, capsys):
    """A finished run, then a new one over it with --overwrite_output_dir and the same options, killed after its first
    checkpoint: requeued with `auto` it resumes that checkpoint (mutant: the earlier run's finish record stayed, and
    `auto` said "nothing to resume" over a half-trained best/)."""
    from loop import Loop, parse_args

    class Killed(Loop):
        armed = False

        def on_epoch_start(self):
            if self.state.epoch == 1 and self.armed:
                raise KeyboardInterrupt

    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, max_train_samples=64, max_eval_samples=16, num_train_epochs=2,
                     checkpointing_steps="epoch")
    Killed(parse_args(args)).fit()
    assert os.path.isfile(os.path.join(out, ckpt.FINISHED_FILE))
    Killed.armed = True
    with pytest.raises(KeyboardInterrupt):
        Killed(parse_args(args + ["--overwrite_output_dir", "true"])).fit()
    assert not os.path.exists(os.path.join(out, ckpt.FINISHED_FILE))
    Killed.armed = False
    capsys.readouterr()
    Killed(parse_args(args + ["--resume_from_checkpoint", "auto"])).fit()
    said = "".join(capsys.readouterr())
    assert "resumed from" in said and "nothing to resume" not in said, said[-2000:]


def test_a_start_puts_back_a_checkpoint_a_crash_left_aside_and_drops_half_written_ones(tiny_model, tiny_data, tmp_path):
    """A process killed while replacing checkpoints/step_4 left it as step_4.old, another mid-save left .tmp-step_6:
    the next start puts step_4 back (`latest` finds it) and removes the half-written folder (mutant: neither, and the
    checkpoint stayed invisible to `latest` and rotation)."""
    from types import SimpleNamespace

    from loop.config import parse_args

    out = str(tmp_path / "out")
    root = os.path.join(out, "checkpoints")
    os.makedirs(root)
    os.rename(make_ckpt(root, 4), os.path.join(root, "step_4.old"))
    os.makedirs(os.path.join(root, ".tmp-step_6"))
    assert ckpt.list_checkpoints(root) == []
    cfg = parse_args(tiny_args(tiny_model, tiny_data, out, overwrite_output_dir="true"))
    c = ckpt.Checkpointer(SimpleNamespace(cfg=cfg, accelerator=SimpleNamespace(is_main_process=True, num_processes=1)))
    assert c._check_output_dir() is None
    assert ckpt.list_checkpoints(root) == [(4, os.path.join(root, "step_4"))]
    assert sorted(os.listdir(root)) == ["step_4"]


def test_room_for_best_but_not_for_a_checkpoint_is_refused_unless_the_earlier_run_frees_it(tiny_model, tiny_data,
                                                                                           tmp_path, monkeypatch):
    """Free space for best/ and half a checkpoint: a run that saves checkpoints stops before training (mutant: best/
    alone was compared, and the run failed at its first checkpoint); the same free space beside an earlier run's
    checkpoints, which --overwrite_output_dir removes before training, is enough (mutant: they were not counted free,
    and a run that fits was refused)."""
    import collections

    from loop import Loop, parse_args

    usage = collections.namedtuple("Usage", "total used free")
    out = str(tmp_path / "out")
    args = tiny_args(tiny_model, tiny_data, out, num_train_epochs=1, max_train_samples=64, max_eval_samples=32,
                     checkpointing_steps=2)
    sizes = {}

    def disk_usage(path):  # the datasets cache asks too: room for it; the check, once the model exists, sized from it
        if getattr(lp, "model", None) is None:
            return usage(10**12, 0, 10**12)
        one, best = checkpoint_folders.save_sizes(lp.model)
        sizes.update(one=one)
        return usage(10**12, 10**12, best + one // 2)

    monkeypatch.setattr("shutil.disk_usage", disk_usage)
    lp = Loop(parse_args(args))
    with pytest.raises(UserError, match=r"has .* free but one checkpoint \(~.*\) and best/ \(~.*\) need about"):
        lp.setup()
    lp.checkpointer.release()
    assert not os.path.exists(os.path.join(out, "metrics.jsonl"))
    # an earlier run's checkpoint of a whole checkpoint's size, replaced by this run
    earlier = os.path.join(out, "checkpoints", "step_2")
    os.makedirs(earlier)
    with open(os.path.join(earlier, "model.safetensors"), "wb") as f:
        f.write(b"\0" * sizes["one"])
    storage.write_json(os.path.join(earlier, ckpt.STATE_FILE), {"state": {"global_step": 2}})
    lp = Loop(parse_args(args + ["--overwrite_output_dir", "true"]))
    with pytest.warns(UserWarning, match=r"room for 1 of the 2 checkpoints this run holds at once"):
        lp.setup()  # (enough for one, not for both this run holds at once: said, not refused)
    lp.checkpointer.release()
    assert not os.path.exists(earlier)  # removed once every check passed


def test_two_callbacks_of_one_class_keep_a_state_each():
    """Two callbacks of one class (early stopping on two metrics, say) are saved under two keys, so each gets its own
    state back on resume (mutant: one key for both, the second's state saved and given to both)."""
    class Counter:
        pass

    class Other:
        pass

    a, b, c = Counter(), Other(), Counter()
    assert ckpt.callback_keys([a, b, c]) == [("Counter", a), ("Other", b), ("Counter#2", c)]
    # named by a state_key of their own, two of one class keep their states in any order (helper var F3)
    a.state_key, c.state_key = "top3", "top5"
    assert ckpt.callback_keys([c, b, a]) == [("top5", c), ("Other", b), ("top3", a)]
    # keys that would hand one callback's state to another (review rev3 F2-F4): a number (an old checkpoint's
    # position), a '#' (a second callback's key), another callback's class name or key, a non-text
    for cls in (Counter, Other):  # (keys guard state: only callbacks that have some are checked)
        cls.state_dict = lambda self: {}
    for bad in ("5", "Counter#2", "Other", "top5", 5, " "):
        a.state_key = bad
        with pytest.raises(UserError, match=rf"^Counter.state_key {re.escape(repr(bad))} cannot name its state in "
                                            rf"checkpoints: give each callback a text of its own"):
            ckpt.callback_keys([c, b, a])
    a.state_key = ""  # (as if none: its class name; review rev4 F1)
    assert ckpt.callback_keys([a, b]) == [("Counter", a), ("Other", b)]
    a.state_key = "Counter"  # its own class name, no other of its class
    assert ckpt.callback_keys([a, b]) == [("Counter", a), ("Other", b)]
    del Other.state_dict  # a stateless callback's name is no other's key (rev4 F2)
    a.state_key = "Other"
    assert ckpt.callback_keys([a, b]) == [("Other", a), ("Other#2", b)]
    assert ckpt.callback_keys([b, a]) == [("Other", b), ("Other#2", a)]  # (in either order)


def test_a_new_run_removes_every_checkpoint_folder_an_earlier_run_left(tmp_path):
    """An earlier run's checkpoints/ as a new run over it finds it: its checkpoints, one moved aside by a resume
    (.abandoned-step_N), one half written, one left while replaced (.old) all go, a user's own file stays (mutant:
    the abandoned timeline stayed, a whole checkpoint's size, with a warning naming it as the user's)."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    make_ckpt(str(root), 2)
    os.rename(make_ckpt(str(root), 6), str(root / ".abandoned-step_6"))
    os.rename(make_ckpt(str(root), 4), str(root / "step_4.old"))
    (root / ".tmp-step_8").mkdir()
    (root / "notes.txt").write_text("mine")
    assert checkpoint_folders.remove_earlier_checkpoints(str(root)) == [str(root / "notes.txt")]
    assert os.listdir(root) == ["notes.txt"]


def test_an_older_loops_finished_run_with_push_to_hub_added_is_pushed_without_training(tiny_model, tiny_data,
                                                                                        tmp_path, capsys, monkeypatch):
    """An older loop's finished run (no finish record), re-submitted in its own folder with `auto` and --push_to_hub
    added: found finished, best/ pushed, nothing trained (mutant: no push owed, so the run ended without pushing;
    the older test's push case ran in a copy under another --output_dir, which trained the last steps again and
    pushed at their end, passing either way)."""
    from loop import Loop, parse_args

    out, args = _older_loops_finished_run(tiny_model, tiny_data, tmp_path)
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        log = f.read()
    pushed = []
    monkeypatch.setattr("loop.hub.push_problem", lambda cfg: None)
    monkeypatch.setattr(ckpt.Checkpointer, "push_to_hub", lambda self: pushed.append(self.best_dir))
    capsys.readouterr()
    Loop(parse_args(args + ["--resume_from_checkpoint", "auto", "--push_to_hub"])).fit()
    said = "".join(capsys.readouterr())
    assert "resumed from" not in said and f"the run in '{out}' finished at step 12" in said, said[-2000:]
    assert pushed == [os.path.join(out, "best")]
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        assert f.read() == log
