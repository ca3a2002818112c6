"""Tests written by a mutation audit of loop/checkpoint_folders.py and loop/storage.py (audit70 m14): each one fails
on a small change of the code that a user would notice and passes on the code as it is."""

import os

import pytest
import torch

from loop import checkpoint_folders
from loop import storage
from loop.errors import UserError


def test_the_size_of_a_checkpoint_counts_adams_two_moments_of_the_trainable_parameters_only():
    """The start's check of free disk space sizes one checkpoint as the weights plus AdamW's exp_avg and exp_avg_sq of
    each trainable parameter, and best/ as the weights (mutants: one moment counted, a run that fits one checkpoint
    less than it needs is let start and fails at its first save; the frozen parameters' moments counted instead)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    model[2].requires_grad_(False)  # 8 frozen weights
    weights = 4 * (4 * 3 + 3 + 3 + 3 + 3 * 2 + 2) + 4 * 3 + 4 * 3 + 8  # parameters; BatchNorm's running stats, count
    trainable = 4 * (4 * 3 + 3 + 3 + 3)
    assert checkpoint_folders.save_sizes(model) == (weights + 2 * trainable, weights)


def test_the_groups_settings_are_their_peak_learning_rate_not_the_scheduled_one():
    """What a resume compares between the optimizer it built and the checkpoint it loaded is each group's peak learning
    rate (initial_lr, once a scheduler exists): mid-warmup or mid-decay the current lr differs on every resume
    (mutant: the current lr compared, and every resume warned that the groups were built with other settings)."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW([{"params": [model.weight], "lr": 1e-3, "weight_decay": 0.01},
                                   {"params": [model.bias], "lr": 2e-3, "weight_decay": 0.0}])
    assert checkpoint_folders.group_settings(optimizer) == [(1e-3, 0.01), (2e-3, 0.0)]  # no scheduler yet
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 / (step + 1))
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3 * 0.25, 2e-3 * 0.25]
    assert checkpoint_folders.group_settings(optimizer) == [(1e-3, 0.01), (2e-3, 0.0)]


def test_weights_renamed_for_torch_compile_load_with_their_data_aligned(tmp_path):
    """A checkpoint of a compiled run resumed without compiling: the view's weights file has the names the model
    has and the same tensors, its data 8-byte aligned as safetensors writes it (mutant: no padding, the header's
    length shifts the data off the alignment readers that map the file in place rely on)."""
    import json
    import struct

    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 1))
    saved = {f"_orig_mod.{k}": v.clone() for k, v in model.state_dict().items()}
    source, dest = str(tmp_path / "model.safetensors"), str(tmp_path / "view.safetensors")
    save_file(saved, source)
    renames = checkpoint_folders.compile_renames(source, model)
    assert renames == {"_orig_mod.0.weight": "0.weight", "_orig_mod.0.bias": "0.bias"}
    checkpoint_folders.rename_weights(source, dest, renames)
    with open(dest, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    assert size % 8 == 0 and set(header) == {"0.weight", "0.bias"}
    loaded = load_file(dest)
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert checkpoint_folders.compile_renames(dest, model) is None  # the names are the model's now


def test_unreadable_checksums_are_a_damaged_folder_not_an_older_one(tmp_path):
    """A best/ whose checksums.json is cut short (a full disk, a bad copy) does not verify: read as if it had none (an
    older loop's), it was copied and given fresh checksums of whatever it held (mutant: None for unreadable)."""
    folder = tmp_path / "best"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / checkpoint_folders.BEST_CHECKSUMS).write_text('{"model.safetensors": "ab')
    sums = checkpoint_folders.read_checksums(str(folder))
    assert checkpoint_folders.verify_files(str(folder), sums) == "'checksums.json' does not match its checksum"
    assert checkpoint_folders.read_checksums(str(tmp_path)) is None  # none at all: an older loop's


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow  # (16 s on 2 busy cores: the check unpickles in a child process that imports torch)
def test_a_resume_checks_a_sharded_checkpoints_metadata_before_accelerate_unpickles_it(tmp_path, monkeypatch):
    """load_accelerator_files, the resume's load, refuses a checkpoint whose optimizer_0/.metadata pickle runs code
    before accelerate's load_state reads it with a plain pickle.load (mutant: the check left out of the load, the
    check itself still tested on its own, and a checkpoint copied from someone else ran their code); with
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 the user trusts it and the load goes on (mutant: refused all the same)."""
    import pickle
    from types import SimpleNamespace

    step = tmp_path / "checkpoints" / "step_3"
    (step / "optimizer_0").mkdir(parents=True)
    marker = tmp_path / "ran"
    (step / "optimizer_0" / ".metadata").write_bytes(pickle.dumps(_RunsCode(marker)))
    loaded = []
    accelerator = SimpleNamespace(load_state=loaded.append)
    with pytest.raises(UserError, match=r"'optimizer_0/\.metadata' holds posix\.system, which no sharded checkpoint"):
        checkpoint_folders.load_accelerator_files(accelerator, str(step), torch.nn.Linear(1, 1))
    assert loaded == [] and not marker.exists()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # the user trusts it: accelerate's load decides
    checkpoint_folders.load_accelerator_files(accelerator, str(step), torch.nn.Linear(1, 1))
    assert len(loaded) == 1 and not marker.exists()  # (the stand-in load reads nothing)


def _trainable_loop(model):
    from types import SimpleNamespace

    said = []
    loop = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m, **kw: m), model=model, print=said.append)
    return loop, said


def test_a_compiled_runs_older_record_of_frozen_parameters_restores_them_uncompiled():
    """A checkpoint of a compiled run before 2026-12-04 recorded its frozen parameters as _orig_mod.<name>: resumed
    without --torch_compile they are frozen again by their own names (mutant: taken as spelled, every such resume
    refused as 'parameters this model does not have')."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    loop, said = _trainable_loop(model)
    checkpoint_folders.restore_trainable(loop, ["_orig_mod.0.weight", "_orig_mod.0.bias"])
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["0.weight", "0.bias"]
    assert said == ["trainable parameters as at the checkpoint: 0 unfrozen, 2 frozen (a hook had changed them during "
                    "the run)"]


def test_a_record_naming_parameters_the_model_lacks_is_refused_before_any_is_changed():
    """A checkpoint whose record of frozen parameters names ones this model does not have (another layout of the
    model) is refused naming them, the model's trainable parameters left as they were (mutant: no check, the names it
    has frozen and the run went on to fail as missing keys or train the wrong parameters)."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    loop, said = _trainable_loop(model)
    with pytest.raises(UserError, match=r"^the checkpoint records 1 parameter\(s\) this model does not have "
                                        r"\(vision\.weight\): it was made with another layout of the model"):
        checkpoint_folders.restore_trainable(loop, ["0.weight", "vision.weight"])
    assert all(p.requires_grad for p in model.parameters()) and said == []


def test_a_finished_runs_options_leave_out_those_that_change_neither_training_nor_evaluation():
    """The finish record's options, which a re-run compares with its own: logging, checkpointing and resume options
    are left out, so a re-run that logs or saves checkpoints at other steps finds the run finished, not a new one to
    train over it (mutants: every option kept; --checkpointing_steps kept); values as JSON reads them back."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(to_dict=lambda: {
        "learning_rate": 1e-3, "output_dir": __import__("pathlib").Path("out"), "push_to_hub": True,
        "logging_steps": 5, "checkpointing_steps": "10", "save_total_limit": 2, "resume_from_checkpoint": "auto",
        "report_to": "none", "overwrite_output_dir": True})
    assert checkpoint_folders.finished_options(cfg) == {"learning_rate": 1e-3, "output_dir": "out",
                                                         "push_to_hub": True}


def test_a_checkpoint_left_aside_by_a_replacement_cut_short_is_put_back_at_the_next_start(tmp_path):
    """A checkpoint of a step saved again (a resume that repeats the step) is renamed step_N.old while its new one
    goes in: a kill between the two renames leaves step_N.old alone, which the next start renames back, and the
    half-written temporary goes (mutant: the .old left where it was, the step's checkpoint lost to `latest`)."""
    root = tmp_path / "checkpoints"
    old = root / "step_4.old"
    old.mkdir(parents=True)
    storage.write_json(str(old / checkpoint_folders.STATE_FILE), {"state": {"global_step": 4}})
    (root / ".tmp-step_4").mkdir()
    (root / "step_2.old").mkdir()  # its step_2 is there: the new one stays, the .old goes at the next publish
    (root / "step_2").mkdir()
    checkpoint_folders.recover_all(str(root))
    assert sorted(os.listdir(root)) == ["step_2", "step_2.old", "step_4"]
    assert checkpoint_folders.list_checkpoints(str(root)) == [(4, str(root / "step_4"))]


def test_an_earlier_runs_removal_never_follows_a_link_and_drops_the_folders_it_emptied(tmp_path):
    """remove_ours (an earlier run's files removed from --output_dir): a subfolder that is a link to another place is
    kept and named, its target's files untouched, even where a folder of that name is searched (mutant: followed, and
    a file of the same name elsewhere on the disk was removed); a folder the removal emptied goes (mutant: left)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.log").write_text("someone else's")
    folder = tmp_path / "out" / "loop"
    (folder / "1.5").mkdir(parents=True)
    (folder / "1.5" / "run.log").write_text("ours")
    (folder / "run.log").write_text("ours")
    os.symlink(elsewhere, folder / "linked")
    ours = lambda name, path: os.path.isfile(path) and name == "run.log"  # noqa: E731
    inside = lambda name: True  # noqa: E731
    assert checkpoint_folders.remove_ours(str(folder), ours, inside) == [str(folder / "linked")]
    assert (elsewhere / "run.log").read_text() == "someone else's"
    assert sorted(os.listdir(folder)) == ["linked"]  # 1.5/ emptied: removed
    os.unlink(folder / "linked")
    (folder / "run.log").write_text("ours")
    assert checkpoint_folders.remove_ours(str(folder), ours, inside) == []
    assert not folder.exists() and (tmp_path / "out").exists()


def test_latest_says_which_checkpoints_it_skips_and_why(tmp_path):
    """`latest` skips the newer checkpoints that do not verify, one whose loop_state.json is not a record (a list:
    another tool's file) and one whose weights changed, saying so for each, and resumes the newest that verifies
    (mutants: the list taken as a checkpoint, a crash or a resume of it; the skips not said, a run silently resumed
    steps behind where it stopped); a damaged one named by its path is refused."""
    root = tmp_path / "checkpoints"
    for n in (2, 4, 6):
        step = root / f"step_{n}"
        step.mkdir(parents=True)
        (step / "model.safetensors").write_bytes(b"weights %d" % n)
        storage.write_json(str(step / checkpoint_folders.STATE_FILE),
                           {"state": {"global_step": n}, "files": checkpoint_folders.checksum_tree(str(step))})
    storage.write_json(str(root / "step_6" / checkpoint_folders.STATE_FILE), [6])
    (root / "step_4" / "model.safetensors").write_bytes(b"weights changed")
    said = []
    assert checkpoint_folders.resolve_resume("latest", str(tmp_path), say=said.append) == str(root / "step_2")
    assert said == [f"skipping checkpoint '{root / 'step_6'}': loop_state.json is not a checkpoint record",
                    f"skipping checkpoint '{root / 'step_4'}': 'model.safetensors' does not match its checksum"]
    # named explicitly, a checkpoint that does not verify is refused, not resumed (mutant: resumed as it was)
    with pytest.raises(UserError, match=r"^--resume_from_checkpoint '.*step_4' is damaged \('model.safetensors' does "
                                        r"not match its checksum\); use another checkpoint or 'latest'\.$"):
        checkpoint_folders.resolve_resume(str(root / "step_4"), str(tmp_path))


def test_eval_onlys_check_of_the_output_dir_writes_no_probe_takes_the_lock_and_refuses_a_live_runs_folder(tmp_path):
    """--eval_only's early check: the folder is writable, the probe file gone again and the folder's lock taken
    (mutants: the probe left behind; no lock, so a training run started meanwhile replaced best/ under the scores);
    a folder a live training run holds is refused (mutant: not looked at), one whose run died is not (mutant: every
    lock file refused, a crashed run's folder never scored again)."""
    import json
    import subprocess
    import sys
    from types import SimpleNamespace

    import socket

    from loop.lock import LOCK_FILE, process_start

    acc = SimpleNamespace(is_main_process=True, num_processes=1)
    folder = tmp_path / "scores"
    lock = checkpoint_folders.check_writable(acc, str(folder))
    try:
        assert lock is not None and lock.held and os.listdir(folder) == [LOCK_FILE]
    finally:
        lock.release()
    run = tmp_path / "run"
    run.mkdir()
    live = os.getppid()  # a live process of this machine other than this one: the training run's stand-in
    with open(run / LOCK_FILE, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": live, "pstart": process_start(live)[1]}, f)
    with pytest.raises(UserError, match=rf"--output_dir '.*run' is in use by a training run \(process {live} on host"):
        checkpoint_folders.check_writable(acc, str(run))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(run / LOCK_FILE, "w") as f:  # a crashed run's lock, left behind
        json.dump({"host": socket.gethostname(), "pid": dead.pid, "pstart": 1}, f)
    lock = checkpoint_folders.check_writable(acc, str(run))
    assert lock is not None and lock.held
    lock.release()


def test_when_no_checkpoint_verifies_the_advice_fits_auto_or_latest(tmp_path):
    """No checkpoint verifies: under `auto` the fix is --overwrite_output_dir (auto then starts over), under `latest`
    a new run without --resume_from_checkpoint (mutant: the two pieces of advice swapped, telling an auto job to drop
    the option its requeue relies on)."""
    step = tmp_path / "checkpoints" / "step_2"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes(b"weights")
    storage.write_json(str(step / checkpoint_folders.STATE_FILE), {"state": {"global_step": 2},
                                                                    "files": {"model.safetensors": "0" * 64}})
    with pytest.raises(UserError, match=r"^--resume_from_checkpoint auto: none of the 1 checkpoints in .* verifies "
                                        r"\(their files changed after they were written\); add --overwrite_output_dir"):
        checkpoint_folders.resolve_resume("latest", str(tmp_path), auto=True)
    with pytest.raises(UserError, match=r"^--resume_from_checkpoint latest: none of the 1 checkpoints .*; start a new "
                                        r"run with --overwrite_output_dir \(without --resume_from_checkpoint\)"):
        checkpoint_folders.resolve_resume("latest", str(tmp_path))


def test_a_saved_config_names_its_labels_even_where_they_are_transformers_defaults(tmp_path):
    """transformers 5 leaves id2label/label2id out of config.json where they are LABEL_0/LABEL_1: the saved config
    gets them back, so a server reading config.json finds the labels (mutant: the file left as written)."""
    import json
    from types import SimpleNamespace

    storage.write_json(str(tmp_path / "config.json"), {"model_type": "bert"})
    config = SimpleNamespace(id2label={0: "LABEL_0", 1: "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})
    checkpoint_folders.labels_in_config(str(tmp_path), config)
    with open(tmp_path / "config.json") as f:
        assert json.load(f) == {"model_type": "bert", "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
                                "label2id": {"LABEL_0": 0, "LABEL_1": 1}}


def test_a_best_record_matches_its_checkpoint_only_to_the_last_digits_of_a_float(tmp_path):
    """best/ holding the same step's evaluation with a score that differs in the 4th digit (the step evaluated again
    on another timeline) is another evaluation's model (mutant: a 1% tolerance took it for the checkpoint's best)."""
    best = tmp_path / "best"
    best.mkdir()
    storage.write_json(str(best / "best_metrics.json"), {"epoch": 1, "step": 8, "eval_accuracy": 0.7501})
    assert checkpoint_folders.best_mismatch(str(best), "accuracy", 0.7501 + 1e-15, 1, 8) is None
    assert checkpoint_folders.best_mismatch(str(best), "accuracy", 0.75, 1, 8) == \
        "holds another evaluation's model (eval_accuracy=0.7501 at epoch 1, step 8)"


def test_replacing_a_file_never_writes_through_a_link_planted_at_its_temporary_name(tmp_path):
    """replace_file's temporary has a predictable name: a link someone planted there (or a crashed process's
    leftover) is removed first and the file written, the link's target untouched (mutant: left, and the write
    failed on it)."""
    target = tmp_path / "victim"
    target.write_text("keep")
    path = tmp_path / "finished.json"
    os.symlink(target, f"{path}.tmp-{os.getpid()}")
    storage.replace_file(str(path), b"{}")
    assert path.read_bytes() == b"{}" and target.read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["finished.json", "victim"]


def test_a_replacement_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """replace_file failing at its rename (a full disk, an NFS error): the old file stays as it was and the temporary
    goes (mutant: a .tmp-PID file left in the run's folder at each failure)."""
    path = tmp_path / "finished.json"
    path.write_bytes(b"old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        storage.replace_file(str(path), b"new")
    assert os.listdir(tmp_path) == ["finished.json"] and path.read_bytes() == b"old"


def test_a_published_folders_files_get_the_mode_open_gives_and_a_link_is_unlinked_not_followed(tmp_path):
    """fsync_tree gives each file the mode open() gives a new file (safetensors writes 0600: the weights were
    unreadable to the team sharing the output folder; mutant: left 0600); remove_tree on a link removes the link, its
    target untouched (mutant: rmtree refused the link without a word and left it)."""
    folder = tmp_path / "best"
    folder.mkdir()
    os.close(os.open(folder / "model.safetensors", os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(folder / "model.safetensors", 0o600)
    storage.fsync_tree(str(folder))
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(folder / "model.safetensors").st_mode & 0o777 == 0o666 & ~mask
    link = tmp_path / "best.old"
    os.symlink(folder, link)
    storage.remove_tree(str(link))
    assert not os.path.lexists(link) and os.listdir(folder) == ["model.safetensors"]


def test_a_checkpoint_rotation_cannot_move_or_remove_is_warned_about_once_not_at_every_save(tmp_path, monkeypatch):
    """On a read-only mount the old checkpoint can be neither renamed aside nor removed: it stays step_N, which every
    later rotation finds again; the warning is given once (mutant: repeated at every checkpoint of the run)."""
    import shutil
    import warnings

    root = tmp_path / "checkpoints"
    for n in (2, 4):
        step = root / f"step_{n}"
        step.mkdir(parents=True)
        storage.write_json(str(step / checkpoint_folders.STATE_FILE), {"state": {"global_step": n}})

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "rename", read_only)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)
    with pytest.warns(UserWarning, match=r"could not remove the older checkpoint '.*step_2' \(check its permissions\)"):
        checkpoint_folders.rotate(str(root), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint_folders.rotate(str(root), 1)  # said already
    assert sorted(os.listdir(root)) == ["step_2", "step_4"]
