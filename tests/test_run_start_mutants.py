"""Tests written by a mutation audit of loop/run_start.py (audit71 m19): each one fails on a small change of the
start-up checks that a user would notice (a disk check that refuses a run that fits or says the wrong room, a
resumed run counted wrong, another folder's tracker run continued, a hand-edited finish record that crashes the
start) and passes on the code as it is. Most call RunStart's methods on a stand-in, as
test_cluster_agreement's wait test does: milliseconds each."""

import json
import os
import re
from types import SimpleNamespace

import pytest

from loop import checkpoint as ckpt
from loop import run_start, storage
from loop.errors import UserError


def stand_in(tmp_path, warned=None, **cfg):
    """A Checkpointer on a stand-in loop (one process, the main one): output_dir is tmp_path/out."""
    out = str(tmp_path / "out")
    os.makedirs(out, exist_ok=True)
    options = dict(output_dir=out, checkpoint_every=None, num_train_epochs=3, save_total_limit=None,
                   ddp_timeout=1800)
    options.update(cfg)
    warned = [] if warned is None else warned
    acc = SimpleNamespace(is_main_process=True, num_processes=1, mixed_precision="no",
                          unwrap_model=lambda m: m, wait_for_everyone=lambda: None)
    loop = SimpleNamespace(cfg=SimpleNamespace(**options), warn=warned.append, accelerator=acc, model=object())
    return ckpt.Checkpointer(loop)


def checkpoint_at(c, step, epoch=0, **state):
    """A checkpoint folder in c's checkpoints/ whose loop_state.json records `step` (and `state`'s keys)."""
    path = os.path.join(c.checkpoints_dir, f"step_{step}")
    os.makedirs(path)
    storage.write_json(os.path.join(path, ckpt.STATE_FILE), {"state": {"global_step": step, "epoch": epoch}, **state})
    return path


# ---------------------------------------------------------------- the disk check
def sized(monkeypatch, free, ckpt_bytes=100_000, best_bytes=90_000):
    monkeypatch.setattr(run_start, "save_sizes", lambda model: (ckpt_bytes, best_bytes))
    monkeypatch.setattr(run_start, "free_space", lambda path: free)


def test_a_run_that_saves_no_checkpoint_needs_room_for_best_alone(tmp_path, monkeypatch):
    """No --checkpointing_steps: room for best/ but not for a checkpoint is enough (mutant: a checkpoint counted
    anyway, and a run that fits was refused); less room than best/ needs is refused, naming best/ alone."""
    c = stand_in(tmp_path)
    sized(monkeypatch, free=150_000)
    c.check_disk_space()
    sized(monkeypatch, free=80_000)
    with pytest.raises(UserError) as e:
        c.check_disk_space()
    assert str(e.value) == (f"--output_dir '{c.cfg.output_dir}' has 80 kB free but best/ needs about 90 kB; free space "
                            f"or choose another --output_dir.")


def test_the_room_for_checkpoints_is_counted_after_best(tmp_path, monkeypatch):
    """240 kB free, best/ 90 kB, checkpoints of 100 kB, two on disk at once (--save_total_limit 1 and the one just
    written): room for one beside best/, said once (mutant: best/ not subtracted, room for 2: no warning, and the
    disk filled up at the second checkpoint)."""
    warned = []
    c = stand_in(tmp_path, warned, checkpoint_every=1, save_total_limit=1)
    c.loop.max_steps = 10
    sized(monkeypatch, free=240_000)
    c.check_disk_space()
    assert len(warned) == 1, warned
    assert "has 240 kB free: room for 1 of the 2 checkpoints this run holds at once" in warned[0], warned
    sized(monkeypatch, free=290_000)  # room for two beside best/: nothing said
    c.check_disk_space()
    assert len(warned) == 1, warned


def test_a_resumed_run_counts_only_the_checkpoints_it_has_left_to_save(tmp_path):
    """Resumed at epoch 2 of 5 (--checkpointing_steps epoch) or at step 8 of 20 (every 4 steps), no
    --save_total_limit: 3 more checkpoints, not the whole run's 5 (mutant: the checkpoints already saved counted
    again, and a run with room for its rest was warned that the disk fills up)."""
    c = stand_in(tmp_path, checkpoint_every="epoch")
    c.loop.num_epochs = 5
    c.resume_path = checkpoint_at(c, 6, epoch=2)
    assert c.checkpoints_held() == 3
    c = stand_in(tmp_path / "steps", checkpoint_every=4)
    c.loop.max_steps = 20
    c.resume_path = checkpoint_at(c, 8, epoch=1)
    assert c.checkpoints_held() == 3


# ---------------------------------------------------------------- what a resume takes from its checkpoint
def test_only_a_checkpoint_of_this_folder_continues_its_tracker_run(tmp_path):
    """A checkpoint of this run folder (also named through a link to it) continues the wandb run it recorded; one
    of another folder (a copy of the run) starts a run of its own (mutant: the copy continued the original's
    wandb run, renaming it and, online, dropping the copy's steps the original had logged)."""
    c = stand_in(tmp_path)
    own = checkpoint_at(c, 4, tracker_run_id="abc123")
    c.resume_path = own
    assert c.resume_run_id() == "abc123"
    os.symlink(c.cfg.output_dir, str(tmp_path / "link"))
    c.resume_path = str(tmp_path / "link" / "checkpoints" / "step_4")
    assert c.resume_run_id() == "abc123"
    other = stand_in(tmp_path / "copy")
    other.resume_path = own
    assert other.resume_run_id() is None
    other.resume_path = None
    assert other.resume_run_id() is None


def test_a_replaced_runs_tensorboard_events_are_not_kept_up_to_the_resumed_step(tmp_path):
    """resume_step: the checkpoint's step, up to which TensorBoard keeps this folder's events; None over a run this
    one replaces (another folder's checkpoint with --overwrite_output_dir: mutant: the replaced run's events up to
    that step stayed, mixed with this run's)."""
    c = stand_in(tmp_path)
    c.resume_path = checkpoint_at(c, 6)
    assert c.resume_step() == 6
    c._replaced = True
    assert c.resume_step() is None


def test_a_changed_model_config_names_five_fields_and_counts_the_rest(tmp_path):
    """Seven fields differ: five named, sorted, then 'and 2 more' (mutant: all named, a warning of any length;
    or none counted)."""
    c = stand_in(tmp_path)
    then = {f"f{i}": i for i in range(7)}
    c.resume_path = checkpoint_at(c, 2, model_config={**then, "same": 1})
    now = {**{f"f{i}": i + 10 for i in range(7)}, "same": 1}
    c.loop.model = SimpleNamespace(config=SimpleNamespace(to_dict=lambda: now))
    assert c.model_config_changes() == ("f0: 0 then, 10 now; f1: 1 then, 11 now; f2: 2 then, 12 now; f3: 3 then, 13 "
                                        "now; f4: 4 then, 14 now and 2 more")
    now = {**then, "same": 1}
    assert c.model_config_changes() == ""


def test_a_checkpoint_that_records_no_epoch_length_resumes(tmp_path):
    """check_epoch_length: a checkpoint written before epochs' lengths were recorded resumes (mutant: refused as
    'epochs of None batches'); one that records another length is refused, naming both."""
    c = stand_in(tmp_path)
    c.resume_path = checkpoint_at(c, 2)
    c.check_epoch_length(8)
    c = stand_in(tmp_path / "b")
    c.resume_path = checkpoint_at(c, 2, epoch_batches=9)
    c.check_epoch_length(9)
    with pytest.raises(UserError, match=r"trained on epochs of 9 batches per process, this run's have 8"):
        c.check_epoch_length(8)


# ---------------------------------------------------------------- an earlier run in --output_dir
@pytest.mark.parametrize("content", ['[12, "options"]', '{"step": 12, "opt', '"done"'])
def test_a_finish_record_edited_or_cut_short_is_no_finished_run(tmp_path, content):
    """.loop-finished.json holding a list, a string or a cut-off object (a copy cut short, an edit by hand): read as
    no record, so the refusal says 'a run' (mutant: a crash, AttributeError or JSONDecodeError, at the start)."""
    c = stand_in(tmp_path)
    with open(c.finished_path, "w") as f:
        f.write(content)
    assert c.finished_record_here() is None
    assert c.earlier_run_message() == (f"--output_dir '{c.cfg.output_dir}' already holds a run (best/, checkpoints/ "
                                       f"or metrics.jsonl); pass --overwrite_output_dir to replace it, or choose "
                                       f"another --output_dir.")
    checkpoint_at(c, 4)  # a complete checkpoint: a resume offered
    assert c.earlier_run_message().endswith("to replace it, --resume_from_checkpoint latest to continue it, or choose "
                                            "another --output_dir.")


# ---------------------------------------------------------------- the lock
def started(tiny_model, tiny_data, out, **over):
    """A Loop of tiny_args whose accelerator is a stand-in of one process (check_output_dir needs no more)."""
    from conftest import tiny_args
    from loop import Loop, parse_args

    lp = Loop(parse_args(tiny_args(tiny_model, tiny_data, out, **over)))
    lp.accelerator = SimpleNamespace(is_main_process=True, num_processes=1, mixed_precision="no")
    return lp


def test_a_start_puts_back_a_best_folder_a_crash_left_aside(tiny_model, tiny_data, tmp_path):
    """A run killed while replacing best/ (moved aside to best.old, the new one not yet in place): the next start
    puts it back before anything looks at it, so the run is found as an earlier run, not an empty folder (mutant:
    best/ not recovered, and a new run started over the old one's log and checkpoints without a word, leaving
    best.old behind)."""
    out = tmp_path / "out"
    (out / "best.old").mkdir(parents=True)
    (out / "best.old" / "best_metrics.json").write_text('{"step": 4}')
    lp = started(tiny_model, tiny_data, str(out))
    with pytest.raises(UserError, match=r"already holds a run \(best/, checkpoints/ or metrics.jsonl\)"):
        lp.checkpointer.check_output_dir()
    assert (out / "best" / "best_metrics.json").read_text() == '{"step": 4}' and not (out / "best.old").exists()


def test_a_folder_holding_only_an_earlier_log_is_an_earlier_run(tiny_model, tiny_data, tmp_path):
    """metrics.jsonl alone (a run stopped before its first evaluation and checkpoint): a new run is refused, and with
    --overwrite_output_dir the log is cleared before training (mutant: not an earlier run, and the new run appended
    its lines to the old run's log)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 5, "loss": 0.7}\n')
    c = started(tiny_model, tiny_data, str(out)).checkpointer
    with pytest.raises(UserError, match=r"already holds a run \(best/, checkpoints/ or metrics.jsonl\)"):
        c.check_output_dir()
    c = started(tiny_model, tiny_data, str(out), overwrite_output_dir="true").checkpointer
    try:
        c.check_output_dir()
        assert c._clear_earlier and c.resume_path is None
    finally:
        c.release()


def test_a_resume_over_a_damaged_best_folder_is_refused(tiny_model, tiny_data, tmp_path, monkeypatch):
    """Resuming a checkpoint (verified) in a folder whose best/ no longer matches its checksums: refused, naming the
    file, before any work (mutant: not verified, and the resumed run kept a wrong best model, which it would publish
    as the run's result unless a later evaluation beat it)."""
    out = str(tmp_path / "out")
    lp = started(tiny_model, tiny_data, out, resume_from_checkpoint="latest")
    c = lp.checkpointer
    path = checkpoint_at(c, 2, format=ckpt.STATE_FORMAT, config=lp.cfg.to_dict(), classes=c.classes(),
                         num_processes=1)
    monkeypatch.setattr(run_start, "resolve_resume", lambda resume, output_dir, say, auto: path)
    os.makedirs(c.best_dir)
    with open(os.path.join(c.best_dir, "model.safetensors"), "w") as f:
        f.write("weights")
    storage.write_json(os.path.join(c.best_dir, ckpt.BEST_CHECKSUMS), ckpt.checksum_tree(c.best_dir))
    try:
        assert c._check_output_dir() == path  # whole: resumed
        with open(os.path.join(c.best_dir, "model.safetensors"), "w") as f:
            f.write("weightz")
        with pytest.raises(UserError, match=r"^'.*best' is damaged \('model.safetensors' does not match its "
                                            r"checksum\); restore it from a copy"):
            c._check_output_dir()
    finally:
        c.release()


def test_a_new_run_over_another_machines_live_lock_is_refused_at_once(tiny_model, tiny_data, tmp_path, monkeypatch):
    """The lock of a run on another node, touched just now: a new run (no resume) is refused at once, naming it
    (mutant: it waited, up to LOCK_STALE_S, 10 minutes, for the lock to go stale as only a requeued resume does);
    --resume_from_checkpoint auto waits for it."""
    from loop import lock

    out = str(tmp_path / "out")
    os.makedirs(out)
    storage.write_json(os.path.join(out, lock.LOCK_FILE), {"host": "another-node", "pid": 4321, "token": "t"})
    waits = []

    def wait_for_stale(self, holder):
        waits.append(holder["host"])
        raise UserError("waited")

    monkeypatch.setattr(lock.RunLock, "wait_for_stale", wait_for_stale)
    lp = started(tiny_model, tiny_data, out)
    with pytest.raises(UserError) as e:
        lp.checkpointer.check_output_dir()
    assert waits == [] and "another-node" in str(e.value) and "waited" not in str(e.value), str(e.value)
    lp = started(tiny_model, tiny_data, out, resume_from_checkpoint="auto")
    with pytest.raises(UserError, match="waited"):
        lp.checkpointer.check_output_dir()
    assert waits == ["another-node"]


def test_the_run_log_stops_writing_once_another_run_took_the_lock_over(tiny_model, tiny_data, tmp_path):
    """check_output_dir gives the run log its guard: while the lock is this run's, lines are written; once another
    run took the folder over (its lock file in place of ours), none (mutant: no guard, and this run wrote its lines
    into the other run's metrics.jsonl until its next checkpoint)."""
    from loop import lock

    out = str(tmp_path / "out")
    lp = started(tiny_model, tiny_data, out)
    lp.runlog = SimpleNamespace(guard=None)
    try:
        lp.checkpointer.check_output_dir()
        assert lp.runlog.guard is not None and lp.runlog.guard()
        path = os.path.join(out, lock.LOCK_FILE)
        storage.write_json(path + ".theirs", {"host": "another-node", "pid": 4321, "token": "theirs"})
        os.replace(path + ".theirs", path)  # (a file of its own: another inode than ours)
        assert not lp.runlog.guard()
    finally:
        lp.checkpointer.release()


# ---------------------------------------------------------------- what a new run removes
def test_a_new_run_clears_the_earlier_runs_files_says_what_it_kept_and_forgets_its_finish(tmp_path):
    """clear_earlier_run over an earlier run: its checkpoints, log, finish record and --eval_only files go; a file
    of the user's in checkpoints/ and a TensorBoard file the log kept are named in one warning (mutants: the
    --eval_only files of the replaced model stayed; the finish record stayed, and a re-run with auto called the
    new run finished; the event files kept went unsaid). Without an earlier run to replace (a resume), only the
    finish record goes: the log and checkpoints are the run's own."""
    from loop import logs

    warned = []
    c = stand_in(tmp_path, warned)
    c.loop.runlog = SimpleNamespace(forget_earlier_events=lambda: ["events.out.tfevents.mine"])
    out = c.cfg.output_dir
    checkpoint_at(c, 2)
    with open(os.path.join(c.checkpoints_dir, "notes.txt"), "w") as f:
        f.write("mine")
    scored = [os.path.join(out, name) for name in (*logs.EVAL_ONLY_FILES, logs.PREDICTIONS.format("eval_b"))]
    for path in (c.metrics_path, c.finished_path, *scored):
        with open(path, "w") as f:
            f.write("{}\n")
    c._clear_earlier = True
    c.clear_earlier_run()
    assert sorted(os.listdir(out)) == ["checkpoints"] and os.listdir(c.checkpoints_dir) == ["notes.txt"]
    assert len(warned) == 1 and "notes.txt" in warned[0] and "events.out.tfevents.mine" in warned[0], warned
    # a resume: the finish record goes (the run trains on), nothing else
    checkpoint_at(c, 4)
    for path in (c.metrics_path, c.finished_path, scored[0]):
        with open(path, "w") as f:
            f.write("{}\n")
    c._clear_earlier = False
    c.clear_earlier_run()
    assert not os.path.exists(c.finished_path) and os.path.isfile(c.metrics_path) and os.path.isfile(scored[0])
    assert sorted(os.listdir(c.checkpoints_dir)) == ["notes.txt", "step_4"] and len(warned) == 1


# ---------------------------------------------------------------- a checkpoint this run cannot continue
def test_a_longer_max_steps_is_refused_with_the_way_to_train_on(tiny_model, tiny_data, tmp_path):
    """--max_steps raised on resume: refused as another config, with the way to train on from the run (its best/
    as --model_name_or_path), as for --num_train_epochs (mutant: said for --num_train_epochs alone); another change
    (--learning_rate) is refused without it."""
    lp = started(tiny_model, tiny_data, str(tmp_path / "out"), max_steps=10)
    c = lp.checkpointer
    saved = {"format": ckpt.STATE_FORMAT, "config": lp.cfg.to_dict(), "classes": c.classes(), "num_processes": 1}
    path = checkpoint_at(c, 2, **{**saved, "config": {**saved["config"], "max_steps": 5}})
    with pytest.raises(UserError) as e:
        c.check_resume_compatible(path)
    assert "--max_steps 5 → 10" in str(e.value) and str(e.value).endswith(
        "(to train on from this run, give its best/ as --model_name_or_path: the learning rate schedule was built "
        "for the run's length)."), str(e.value)
    path = checkpoint_at(c, 4, **{**saved, "config": {**saved["config"], "learning_rate": 0.5}})
    with pytest.raises(UserError) as e:
        c.check_resume_compatible(path)
    assert "--learning_rate" in str(e.value) and "best/ as --model_name_or_path" not in str(e.value), str(e.value)
    c.check_resume_compatible(checkpoint_at(c, 6, **saved))  # the same config: nothing to refuse


# ---------------------------------------------------------------- a run found finished
def test_a_finished_run_pushed_to_another_repository_is_pushed_again(tiny_model, tiny_data, tmp_path):
    """Re-submitted with auto: a run that finished and was pushed to me/a, now with --hub_model_id me/b, is finished
    (nothing trained) and owes a push to me/b, whose record then names me/b (mutant: the repository not compared,
    and me/b never got the model); with me/a again it owes nothing. --overwrite_output_dir trains it again."""
    from loop.checkpoint_folders import finished_options

    out = str(tmp_path / "out")
    then = started(tiny_model, tiny_data, out, push_to_hub="true", hub_model_id="me/a")
    os.makedirs(out)
    storage.write_json(os.path.join(out, ckpt.FINISHED_FILE),
                       {"step": 12, "finished": "2026-12-06T10:00:00+0000", "options": finished_options(then.cfg)})
    c = started(tiny_model, tiny_data, out, push_to_hub="true", hub_model_id="me/b",
                resume_from_checkpoint="auto").checkpointer
    assert c.finished_here().startswith(f"the run in '{out}' finished at step 12")
    assert c.push_pending and c.finished_record["options"]["hub_model_id"] == "me/b"
    c = started(tiny_model, tiny_data, out, push_to_hub="true", hub_model_id="me/a",
                resume_from_checkpoint="auto").checkpointer
    assert c.finished_here().startswith(f"the run in '{out}' finished at step 12")
    assert not c.push_pending and c.finished_record is None
    c = started(tiny_model, tiny_data, out, push_to_hub="true", hub_model_id="me/b", resume_from_checkpoint="auto",
                overwrite_output_dir="true").checkpointer
    assert c.finished_here() is None


# ---------------------------------------------------------------- the data a resume must find again
def with_signature(c, signature):
    c.loop.data = object()
    c._signature = (c.loop.data, signature)  # (data_signature() computed: what this run prepared)


def test_a_resume_on_other_data_says_the_fix_that_fits_the_difference(tmp_path):
    """The checkpoint cut its texts on the left, this run on the right: the fix is --truncation_side left (mutant:
    'the same data files', which the user already gives); an extra evaluation set of other texts under a name the
    checkpoint knew: 'the same data files (or give the evaluation set another name)'."""
    c = stand_in(tmp_path)
    c.resume_path = checkpoint_at(c, 2, data={"truncation_side": "left", "extra_eval": {}})
    with_signature(c, {"truncation_side": "right", "extra_eval": {}})
    with pytest.raises(UserError) as e:
        c.check_resume_signature()
    assert str(e.value).endswith("; resume with --truncation_side left (the checkpoint's), or start a new run in "
                                 "another --output_dir."), str(e.value)
    c.resume_path = checkpoint_at(c, 4, data={"truncation_side": "right", "extra_eval": {"b": [10, "aaaa"]}})
    with_signature(c, {"truncation_side": "right", "extra_eval": {"b": [10, "bbbb"]}})
    with pytest.raises(UserError) as e:
        c.check_resume_signature()
    assert "(evaluation set 'b': other texts or labels); resume with the same data files (or give the evaluation set " \
           "another name), or start" in str(e.value), str(e.value)
    with_signature(c, {"truncation_side": "right", "extra_eval": {"b": [10, "aaaa"]}})
    c.check_resume_signature()


def test_an_evaluation_set_dropped_on_resume_stays_in_the_next_checkpoints_record(tmp_path):
    """Resumed without the extra set 'gone' the checkpoint recorded: the next checkpoint still records it (from the
    resumed one), so the set brought back later must be the same examples (mutant: forgotten, and other examples
    under that name were scored as the same set's curve); a set of this run's keeps this run's record."""
    c = stand_in(tmp_path)
    c.resume_path = checkpoint_at(c, 2, data={"truncation_side": "right",
                                              "extra_eval": {"gone": [5, "aaaa"], "kept": [7, "old"]}})
    with_signature(c, {"truncation_side": "right", "extra_eval": {"kept": [7, "new"]}})
    assert c.saved_signature() == {"truncation_side": "right",
                                   "extra_eval": {"gone": [5, "aaaa"], "kept": [7, "new"]}}
    c.resume_path = None  # a fresh run: its own sets alone
    assert c.saved_signature() == {"truncation_side": "right", "extra_eval": {"kept": [7, "new"]}}


def test_the_data_signature_is_computed_once_per_prepared_data(tmp_path, monkeypatch):
    """data_signature(): computed once for a Data, again for another (data prepared anew in the same loop: mutant:
    the first data's signature kept, and a checkpoint recorded data this run no longer trains on)."""
    computed = []

    def signature(data, tokenizer):
        computed.append(data)
        return {"which": data.name}

    monkeypatch.setattr(run_start, "data_signature", signature)
    c = stand_in(tmp_path)
    c.loop.data = SimpleNamespace(name="first")
    assert c.data_signature() == {"which": "first"} and c.data_signature() == {"which": "first"}
    c.loop.data = SimpleNamespace(name="second")
    assert c.data_signature() == {"which": "second"} and len(computed) == 2


def test_an_older_loops_run_is_finished_only_by_its_own_evidence(tiny_model, tiny_data, tmp_path):
    """_finished_unrecorded on an older loop's checkpoint at step 10 of 12 (best 0.7 at step 5): the log after it
    holds 0.8 at step 10 and 0.75 at step 12, best/ step 10's: finished, also with the training file named through a
    link (mutant: another spelling of the same file was another run, which trained its last steps again). Not
    finished when the checkpoint's best is taken for the lower of two (mutant: improved() read backwards), when best/
    holds another step, or when this start took a dead run's stale lock over (mutant: a run that died after writing
    its last line but not its best/ lost that best)."""
    out = str(tmp_path / "out")
    os.makedirs(out)
    os.symlink(str(tiny_data), str(tmp_path / "data"))
    lp = started(tiny_model, tiny_data, out, max_steps=12)
    c = lp.checkpointer
    then = {**lp.cfg.to_dict(), "train_file": str(tmp_path / "data" / "train.jsonl")}
    c.resume_path = checkpoint_at(c, 10, config=then, state={"global_step": 10, "epoch": 1, "metrics_lines": 2,
                                                             "best_metric": 0.7, "best_step": 5})
    with open(c.metrics_path, "w") as f:
        for record in ({"step": 5, "eval_accuracy": 0.7}, {"step": 10, "loss": 0.5},
                       {"step": 10, "eval_accuracy": 0.8}, {"step": 12, "eval_accuracy": 0.75}):
            f.write(json.dumps(record) + "\n")
    os.makedirs(c.best_dir)
    storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), {"step": 10, "eval_accuracy": 0.8})
    assert c._finished_unrecorded(12)
    c.lock = SimpleNamespace(took_over={"host": "n1", "pid": 7})  # the stale lock of a run that died
    assert not c._finished_unrecorded(12)
    c.lock = None
    storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), {"step": 12, "eval_accuracy": 0.75})
    assert not c._finished_unrecorded(12)
    storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), {"step": 10, "eval_accuracy": 0.8})
    assert c._finished_unrecorded(12)
    # killed before its last evaluation, or resubmitted with another option: resumed (mutants: neither looked at)
    assert not c._finished_unrecorded(13)
    lp = started(tiny_model, tiny_data, out, max_steps=12, learning_rate=0.5)
    lp.checkpointer.resume_path = c.resume_path
    assert not lp.checkpointer._finished_unrecorded(12)


def test_a_finished_run_of_a_loop_before_best_step_was_recorded_is_not_trained_again(tiny_model, tiny_data, tmp_path):
    """A checkpoint of a loop before 2026-11-29 has no best_step: its finished run, given --resume_from_checkpoint
    auto, trained its tail again and rewrote its log (compat F1). Its best/ is the checkpoint's best when it holds
    that value at that epoch and no later evaluation beat it; another value or epoch there is not."""
    out = str(tmp_path / "out")
    os.makedirs(out)
    lp = started(tiny_model, tiny_data, out, max_steps=12)
    c = lp.checkpointer
    c.resume_path = checkpoint_at(c, 10, config=lp.cfg.to_dict(), state={
        "global_step": 10, "epoch": 1, "metrics_lines": 2, "best_metric": 0.8, "best_epoch": 1})
    with open(c.metrics_path, "w") as f:
        for record in ({"step": 5, "eval_accuracy": 0.8}, {"step": 10, "loss": 0.5},
                       {"step": 12, "eval_accuracy": 0.75}):
            f.write(json.dumps(record) + "\n")
    os.makedirs(c.best_dir)
    storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), {"epoch": 1, "eval_accuracy": 0.8})
    assert c._finished_unrecorded(12)
    for other in ({"epoch": 2, "eval_accuracy": 0.8}, {"epoch": 1, "eval_accuracy": 0.75}):
        storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), other)
        assert not c._finished_unrecorded(12)
    # a checkpoint of this loop records best_step; one it reset (None) is no older loop's: no evidence (rev2 F5)
    storage.write_json(os.path.join(c.best_dir, "best_metrics.json"), {"epoch": 1, "eval_accuracy": 0.8})
    c.resume_path = checkpoint_at(c, 11, config=lp.cfg.to_dict(), state={
        "global_step": 10, "epoch": 1, "metrics_lines": 2, "best_metric": 0.8, "best_epoch": 1, "best_step": None})
    assert not c._finished_unrecorded(12)


@pytest.mark.parametrize("fmt", ["2", 1.5, None, True, -1])
def test_a_checkpoint_format_that_is_no_whole_number_is_refused_in_one_line(tiny_model, tiny_data, tmp_path, fmt):
    """loop_state.json's "format" edited into text, a fraction, null, true or below 0: refused as a damaged record in
    one line, named as the file has it, not as a newer loop's to upgrade to (audit71 m19 N1, N2: true passed as format
    1, -1 as an old format); mutant: not checked, and '2' > 1 crashed with a TypeError traceback."""
    lp = started(tiny_model, tiny_data, str(tmp_path / "out"))
    c = lp.checkpointer
    path = checkpoint_at(c, 2, format=fmt, config=lp.cfg.to_dict(), classes=c.classes(), num_processes=1)
    shown = re.escape(json.dumps(fmt))  # as the file has it: true, null, "2"
    with pytest.raises(UserError, match=rf"has a damaged loop_state.json \(its format {shown} is no checkpoint "
                                        r"format, a whole number from 0\); resume from another checkpoint"):
        c.check_resume_compatible(path)


def test_only_a_metric_the_checkpoint_took_by_default_goes_on_without_metric(tiny_model, tiny_data, tmp_path):
    """Resumed without --metric: a checkpoint that took f1 by default (multi-label data) goes on with f1; one of an
    earlier loop that records no default named --metric f1 itself, so this run keeps its own accuracy and the
    comparison of options then refuses the change (mutant: taken as a default, and the resume silently went on by
    another metric than this command names)."""
    lp = started(tiny_model, tiny_data, str(tmp_path / "out"))
    c = lp.checkpointer
    c.keep_checkpoint_metric(checkpoint_at(c, 2, config={"metric": "f1"}))
    assert lp.cfg.metric == "accuracy"
    c.keep_checkpoint_metric(checkpoint_at(c, 4, config={"metric": "f1"}, metric_defaulted=True))
    assert lp.cfg.metric == "f1"


def test_an_older_loops_checkpoint_is_refused_where_that_loop_prepared_other_data(tmp_path):
    """A checkpoint with no data record (an older loop's) resumes, unless that loop prepared other data from the
    same files: labels numbered in a trained head's order (mutant: not checked, and the resumed head's rows meant
    other labels), or an evaluation subset cut by --max_eval_samples alone (it took the first N rows then: mutant:
    only a training subset checked, and the run's curve went on scoring other examples)."""
    from loop.splits import EVAL, TRAIN

    c = stand_in(tmp_path, max_train_samples=None, max_eval_samples=None)
    c.resume_path = checkpoint_at(c, 2, config={"learning_rate": 0.001})
    c.loop.data = SimpleNamespace(carved=False, head_order=False, subset_cut=frozenset())
    c.check_resume_signature()
    c.loop.data.head_order = True
    with pytest.raises(UserError, match=r"older version of loop, which numbered the labels in the data's order"):
        c.check_resume_signature()
    c.loop.data = SimpleNamespace(carved=False, head_order=False, subset_cut=frozenset([EVAL]))
    with pytest.raises(UserError, match=r"older version of loop, which took the first --max_train_samples / "
                                        r"--max_eval_samples rows"):
        c.check_resume_signature()
    c.loop.data.subset_cut = frozenset([TRAIN, EVAL])
    c.resume_path = checkpoint_at(c, 4, config={"learning_rate": 0.001, "lora_r": None})  # a version after the change
    c.check_resume_signature()


# ---------------------------------------------------------------- logs.py: the files a new run removes, a log value
def test_eval_only_files_are_found_in_a_folder_whose_name_is_a_glob_pattern(tmp_path):
    """--output_dir 'run[1]' (brackets are glob syntax): an earlier --eval_only's files there, an extra set's
    predictions included, are found, files only and in a fixed order (mutant: the folder's name not escaped, and the
    extra set's predictions of the replaced model stayed beside the new run's)."""
    from loop import logs

    out = tmp_path / "run[1]"
    out.mkdir()
    for name in ("eval_results.json", "test_predictions.jsonl", "eval_b_predictions.jsonl", "eval_a_predictions.jsonl"):
        (out / name).write_text("{}\n")
    (out / "eval_dir_predictions.jsonl").mkdir()  # not a file: not theirs
    assert logs.eval_only_files(str(out)) == [str(out / n) for n in (
        "eval_results.json", "test_predictions.jsonl", "eval_a_predictions.jsonl", "eval_b_predictions.jsonl")]


def test_an_earlier_runs_event_files_go_and_anything_else_stays(tmp_path):
    """remove_event_files: TensorBoard's event files and hparams.yml go, in its timestamped subfolders too, and the
    folders they emptied; a file of the user's stays and is returned (mutants: the subfolders not looked into, or
    other files removed); a loop/ that is a link is left alone (never followed: loop/ under --output_dir . can be
    this package)."""
    from loop import logs

    folder = tmp_path / "loop"
    (folder / "1700000000.25").mkdir(parents=True)
    for path in ("events.out.tfevents.1.host", "hparams.yml", "1700000000.25/events.out.tfevents.2.host"):
        (folder / path).write_text("x")
    (folder / "notes.txt").write_text("mine")
    assert logs.remove_event_files(str(folder)) == [str(folder / "notes.txt")]
    assert sorted(os.listdir(folder)) == ["notes.txt"]
    os.remove(folder / "notes.txt")
    (folder / "events.out.tfevents.3.host").write_text("x")
    assert logs.remove_event_files(str(folder)) == [] and not folder.exists()  # emptied: gone
    target = tmp_path / "package"
    target.mkdir()
    (target / "events.out.tfevents.4.host").write_text("x")
    os.symlink(str(target), str(folder))
    assert logs.remove_event_files(str(folder)) == [str(folder)]
    assert os.listdir(target) == ["events.out.tfevents.4.host"]


def test_a_log_value_of_numpy_or_a_one_element_tensor_is_written_as_a_number():
    """plain(): np.float32, a 0-d array and a one-element tensor become Python numbers (mutant: left as they are,
    and json.dumps stopped the run at its first log line); a list stays; a float instead of a dict, or a value
    JSON cannot hold, is one line naming it."""
    import numpy as np
    import torch

    from loop import logs

    got = logs.plain({"a": np.float32(0.5), "b": np.asarray(2), "c": torch.tensor([1.5]), "d": [1, 2]}, "Loop.log")
    assert got == {"a": 0.5, "b": 2, "c": 1.5, "d": [1, 2]} and type(got["a"]) is float and type(got["b"]) is int
    with pytest.raises(UserError, match=r"^compute_metrics gave a float, not a dict; return \{name: value\}"):
        logs.plain(0.9, "compute_metrics")
    with pytest.raises(UserError, match=r"^Loop.log gave 'e' = ndarray \(.*\), which a JSON log line cannot hold"):
        logs.plain({"e": np.zeros(3)}, "Loop.log")
