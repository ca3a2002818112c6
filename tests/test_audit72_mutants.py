"""Mutation audit of audit72's new code (helper m21): behaviour the earlier tests left unpinned."""

import os
from types import SimpleNamespace

import pytest

from loop.errors import UserError


def test_remove_entry_removes_a_link_to_a_folder_as_a_link_and_leaves_its_target(tmp_path):
    """remove_entry: an earlier run's entry that is a link to a folder (a checkpoints/ or a file linked to scratch)
    goes as a link; the folder it points to stays (mutant: rmtree on the link, which refuses a link, and the start
    was refused with 'could not remove' for a link it may remove)."""
    from loop.checkpoint_folders import remove_entry

    target = tmp_path / "scratch"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    link = tmp_path / "step_2"
    os.symlink(str(target), str(link))
    remove_entry(str(link))
    assert not os.path.lexists(link)
    assert os.listdir(target) == ["keep.txt"]


def test_remove_entry_finishes_a_folder_whose_file_went_meanwhile(tmp_path, monkeypatch):
    """A folder whose removal failed on a file gone meanwhile (another rank, a tmp cleaner) is removed to the end,
    with no error (mutant: the rest not removed, and the start refused naming a folder it could remove)."""
    from loop import checkpoint_folders

    folder = tmp_path / "step_4"
    folder.mkdir()
    (folder / "model.safetensors").write_text("x")
    real = checkpoint_folders.shutil.rmtree

    def first_fails(path, ignore_errors=False):
        if not ignore_errors:
            raise FileNotFoundError(2, "No such file or directory", os.path.join(path, "gone.bin"))
        real(path, ignore_errors=True)

    monkeypatch.setattr(checkpoint_folders.shutil, "rmtree", first_fails)
    checkpoint_folders.remove_entry(str(folder))
    assert not os.path.lexists(folder)


def test_remove_entry_names_a_dangling_link_it_cannot_remove(tmp_path, monkeypatch):
    """An entry that stays is named in one line, a link whose target is gone included (mutant: exists() instead of
    lexists(): the dangling link stayed without a word, and a later start read it as the earlier run's)."""
    from loop import checkpoint_folders

    link = tmp_path / "all_results.json"
    os.symlink(str(tmp_path / "gone"), str(link))

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(checkpoint_folders.os, "remove", denied)
    with pytest.raises(UserError) as refused:
        checkpoint_folders.remove_entry(str(link))
    assert str(refused.value) == (f"could not remove the earlier run's '{link}' (Permission denied); remove it "
                                  f"yourself (as its owner, where it is writable), or choose another --output_dir.")


def test_a_single_dataloader_worker_raises_the_open_files_limit_too(monkeypatch):
    """dataloaders: one worker shares its batches through file descriptors as two do, so its run checks the open
    files limit as well (mutant: only from two workers on, and --dataloader_num_workers 1 under `ulimit -Sn 32` waited
    forever for its batch); no worker, no check."""
    from accelerate import Accelerator

    from loop import loaders
    from loop.config import TrainConfig
    from test_loaders_mutants import _data

    asked = []
    monkeypatch.setattr(loaders, "enough_open_files", lambda workers, alive: asked.append((workers, alive)))
    for workers in (1, 0, 2):
        cfg = TrainConfig(per_device_train_batch_size=4, dataloader_num_workers=workers)
        loaders.dataloaders(cfg, _data(), None, 16, Accelerator(cpu=True))
    with_test = _data()
    with_test.test, with_test.extra_eval = with_test.eval, {"a": with_test.eval, "b": with_test.eval}
    loaders.dataloaders(TrainConfig(dataloader_num_workers=3), with_test, None, 16, Accelerator(cpu=True))
    # the loaders whose workers stay alive: training and evaluation; then also test and two extra sets
    assert asked == [(1, 2), (2, 2), (3, 5)]


def test_a_console_escapes_only_what_its_own_encoding_cannot_show():
    """say() on a console of another encoding than UTF-8 (a redirected stdout under Windows' cp1252, a latin-1
    terminal): a character that encoding has is written as it is, only the others are escaped (mutant: escaped as
    for ASCII, and every accented label of a French data set read 'n\\xe9gatif')."""
    import io

    from loop.logs import say

    raw = io.BytesIO()
    console = io.TextIOWrapper(raw, encoding="latin-1")
    say("labels ['négatif', '正面']", file=console)
    assert raw.getvalue().decode("latin-1") == "[loop] labels ['négatif', '\\u6b63\\u9762']\n"


@pytest.mark.parametrize("which", ["finish", "eval_only"])
def test_an_earlier_runs_finish_record_or_scores_that_cannot_be_removed_stop_the_start(tmp_path, monkeypatch, which):
    """clear_earlier_run: the finish record (all_results.json) and the --eval_only files of the run replaced go
    through remove_entry, so one this user cannot remove stops the start in one line naming it (mutants: a bare
    os.remove, a PermissionError traceback; the error caught and dropped, and a re-run with auto called the new run
    finished by the record left)."""
    from loop import logs
    from test_run_start_mutants import stand_in

    c = stand_in(tmp_path)
    c.loop.runlog = SimpleNamespace(forget_earlier_events=lambda: [])
    c._clear_earlier = True
    stuck = c.finished_path if which == "finish" else os.path.join(c.cfg.output_dir, logs.EVAL_RESULTS)
    with open(stuck, "w") as f:
        f.write("{}\n")
    real = os.remove

    def denied(path, *args, **kwargs):
        if os.path.abspath(path) == os.path.abspath(stuck):
            raise PermissionError(13, "Permission denied", path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "remove", denied)
    with pytest.raises(UserError) as refused:
        c.clear_earlier_run()
    assert str(refused.value).startswith(f"could not remove the earlier run's '{stuck}' (Permission denied); ")
    assert os.path.isfile(stuck)


def test_a_going_run_of_another_thread_does_not_refuse_the_dead_lock_that_replaced_its_own(tmp_path):
    """running_here compares the token: the folder's lock is another process's now (it took ours over while we were
    suspended, then died), so a start in another thread judges that lock (stale: taken over as a dead run's), not
    our going run's entry (mutant: the token not compared, and the start was refused as 'in use by another run of
    this process' for a lock no run of ours holds). (The test of rev F5 started in the going run itself, whose own
    lock running_here never names.)"""
    from loop import lock as output_lock
    from test_lock_mutants import write_lock

    out = str(tmp_path)
    first = output_lock.RunLock(out)
    first.acquire()
    first.run = {"active": True}  # its fit() goes on, in a thread other than the next start's
    write_lock(first.path, host="node-9", pid=77, token="theirs")
    os.utime(first.path, (0, 0))
    second = output_lock.RunLock(out)
    try:
        second.acquire()
        assert second.held and second.took_over == {"host": "node-9", "pid": 77, "token": "theirs"}
    finally:
        second.release()
        first.release()
    assert os.listdir(out) == []


def test_a_model_folder_that_can_be_listed_but_not_entered_is_named_as_unreadable(tmp_path, monkeypatch):
    """check_folder: a folder of mode 644 (or 744 of another user) lists its names but no file in it opens: it is
    named as unreadable (permission denied) too (mutant: only read permission asked, and its config.json was 'not
    found' or a PermissionError traceback). (os.access stands in for the mode: tests run as root here.)"""
    from loop import predict

    model = str(tmp_path / "best")
    os.makedirs(model)
    with open(os.path.join(model, "config.json"), "w") as f:
        f.write("{}")
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if path == model and mode & os.X_OK else real(path, mode, **kw)))
    with pytest.raises(UserError) as refused:
        predict.check_folder(model)
    assert str(refused.value) == (f"--model '{model}' cannot be read (permission denied); fix its permissions, or run "
                                  f"as a user who may read it.")


def test_no_cache_turns_off_the_cache_of_a_composite_models_text_config():
    """no_cache: a composite config (LLaVA, Gemma 3, a vision-language model's text_config) keeps use_cache in its
    text config, which its decoder reads (mutant: the outer config alone, and the decoder built and held every
    layer's keys and values in every evaluation batch)."""
    from transformers import LlamaConfig, LlavaConfig

    from loop.models import no_cache

    config = LlavaConfig(text_config=LlamaConfig(use_cache=True).to_dict())
    assert config.get_text_config().use_cache is True
    no_cache(config)
    assert config.get_text_config().use_cache is False


def test_numbered_shared_experts_that_train_are_no_routed_experts():
    """find_unused_parameters: shared experts see every token, numbered too (shared_experts.0.*): with the routed
    experts frozen (LoRA on the attention) the trial pass decides, not the expert count (mutant: the shared-expert
    exclusion dropped, and DDP walked the graph every step)."""
    from types import SimpleNamespace

    import torch
    from transformers import PretrainedConfig

    from loop import models
    from loop.config import parse_args

    trained, frozen = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    model = SimpleNamespace(config=PretrainedConfig(num_experts=4), named_parameters=lambda: [
        ("model.layers.0.mlp.experts.3.w1.weight", frozen), ("model.layers.0.mlp.shared_experts.0.w1.weight", trained)])
    cfg = parse_args(["--model_name_or_path", "x", "--output_dir", "x"])
    on, why = models.find_unused_parameters(cfg, model, None)
    assert why.startswith("the trial forward pass failed"), why  # (a stand-in model: the trial pass is what decided)


def test_a_cache_that_cannot_be_written_keeps_its_own_line_through_prepare(monkeypatch):
    """prepare: a UserError already naming the problem (the datasets cache cannot be written, raised from the
    PermissionError on a file in it) goes out as it is (mutant: read as a damaged cache, and the line said 'damaged
    or gone; delete the folders of these data', a fix that cannot work on a read-only cache)."""
    import datasets
    from accelerate import Accelerator

    from loop import data as D
    from loop.config import TrainConfig

    cache = os.path.realpath(str(datasets.config.HF_DATASETS_CACHE))
    said = "the datasets cache cannot be written (Permission denied); set HF_DATASETS_CACHE to a writable folder."

    def raw(*args, **kwargs):
        try:
            raise PermissionError(13, "Permission denied", os.path.join(cache, "json", "x", "cache-1.arrow"))
        except PermissionError as e:
            raise UserError(said) from e

    monkeypatch.setattr(D, "checked_raw", raw)
    with pytest.raises(UserError) as refused:
        D.prepare(TrainConfig(), None, 16, Accelerator(cpu=True))
    assert str(refused.value) == said
