"""Tests written by a mutation audit of what audit73 added (helper m22): the refusal of a folder this user may list but
not enter, or enter but not list; a link to nothing against a link to something; a Hub --model read offline from the
cache alone; a command started with its stdout closed (the lock of a damaged prepared copy's rebuild is pinned in
test_data_input.py). Each fails on a small change of the code that a user would feel, and passes on the code as it is."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_args
from loop import Loop, parse_args
from loop.errors import UserError


def _denied(monkeypatch, paths, denied_bits):
    """os.access as for a folder of another user whose mode grants this user all but `denied_bits` (os.R_OK: mode
    711, enter but not list; os.X_OK: mode 744, list but not enter)."""
    real = os.access

    def access(path, mode, **kw):
        if str(path) in paths and mode & denied_bits:
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)


def _saved_model(tiny_model, folder):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_model, num_labels=2, id2label={0: "NEG", 1: "POS"})
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("denied", ["list", "enter"])
def test_a_model_folder_one_may_enter_but_not_list_or_list_but_not_enter_is_refused(tmp_path, tiny_model, tiny_data,
                                                                                     monkeypatch, denied):
    """Mode 711 (config.json readable, the folder not listable: it blamed the tokenizer files) and mode 744 (listable,
    nothing in it readable) are both a folder this user cannot read: training and loop-predict say so, not one of the
    two permissions alone."""
    from loop import predict

    model = _saved_model(tiny_model, str(tmp_path / "model"))
    _denied(monkeypatch, {model}, os.R_OK if denied == "list" else os.X_OK)
    said = "cannot be read (permission denied); fix its permissions, or run as a user who may read it."
    with pytest.raises(UserError) as refused:
        Loop(parse_args(tiny_args(model, tiny_data, str(tmp_path / "out"), num_train_epochs=1))).fit()
    assert str(refused.value) == f"--model_name_or_path '{model}' {said}"
    with pytest.raises(UserError) as refused:
        predict.run(["--model", model, "fine"])
    assert str(refused.value) == f"--model '{model}' {said}"


@pytest.mark.parametrize("denied", ["list", "enter"])
def test_a_pattern_under_a_folder_one_cannot_list_names_that_folder_not_its_wildcard_part(tmp_path, monkeypatch,
                                                                                         denied):
    """'shards/*/train.jsonl' (a wildcard above the file) under a folder of mode 733 (enter, not list) or 744 (list,
    not enter) names 'shards' as the folder that cannot be listed, not "check the pattern"."""
    from loop.config import data_files

    shards = tmp_path / "shards"
    (shards / "a").mkdir(parents=True)
    _denied(monkeypatch, {str(shards)}, os.R_OK if denied == "list" else os.X_OK)
    pattern = str(shards / "*" / "train.jsonl")
    with pytest.raises(UserError) as refused:
        data_files(pattern, "--train_file")
    assert str(refused.value) == (f"--train_file '{pattern}' matches no file that can be seen: the folder '{shards}' "
                                  f"cannot be listed (permission denied); fix its permissions, or run as a user who "
                                  f"may read it.")


def test_a_pattern_in_a_folder_that_does_not_exist_is_a_pattern_to_check_not_a_permission(tmp_path, monkeypatch):
    """'shard/train-*.jsonl' (a mistyped folder): "check the pattern", not "the folder cannot be listed (permission
    denied)" (os.access says no for a path that does not exist, too)."""
    from loop.config import data_files

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as refused:
        data_files("shard/train-*.jsonl", "--train_file")
    assert str(refused.value) == ("--train_file 'shard/train-*.jsonl' matches no file; check the pattern (quote it, so "
                                  "the shell does not expand it first).")


@pytest.mark.parametrize("offline", [True, False])
def test_a_hub_model_is_read_from_the_cache_alone_offline_and_from_the_hub_online(folders_good, tmp_path,
                                                                                 monkeypatch, offline):
    """loop-predict --model user/model: offline (HF_HUB_OFFLINE) both reads of the snapshot, the safetensors one and
    the older repository's .bin one, ask the cache alone (huggingface_hub 1.26-2.1 went to the Hub for a cached
    commit id and refused it offline: helper floors F2); online they may ask the Hub (a newer commit of a branch)."""
    import shutil

    import huggingface_hub
    from huggingface_hub import constants

    from loop import predict

    asked = []

    def snapshot_download(name, revision=None, allow_patterns=None, ignore_patterns=None, local_files_only=False):
        asked.append(local_files_only)
        folder = tmp_path / "bin"
        if not folder.exists():  # an older repository: torch's pickle format only
            import torch
            from safetensors.torch import load_file

            shutil.copytree(folders_good, folder)
            torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
            os.remove(folder / "model.safetensors")
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    assert predict.hub_model("someone/older", revision="0123456789abcdef0123456789abcdef01234567")
    assert asked == [offline, offline]


@pytest.fixture
def folders_good(tiny_model, tmp_path):
    return _saved_model(tiny_model, str(tmp_path / "good"))


@pytest.mark.slow  # a process of its own that imports loop (~5 s)
def test_a_command_started_with_its_stdout_closed_opens_no_file_on_descriptor_1(tmp_path):
    """`loop-... >&-`: the next file the command opened took descriptor 1, and whatever wrote to the console (a
    library's print, a child process) wrote into that file. Descriptor 1 is /dev/null before the command runs."""
    code = ("import os, sys; sys.path.insert(0, sys.argv[1])\n"
            "from loop.errors import run_cli\n"
            "def fn(argv):\n"
            "    with open(sys.argv[2], 'w') as f:\n"
            "        os.write(2, f'{f.fileno()}\\n'.encode())\n"
            "        os.write(1, b'console line\\n')\n"
            "sys.argv = ['cmd', sys.argv[1], sys.argv[2]]\n"
            "run_cli(fn)\n")
    written = str(tmp_path / "written.txt")
    proc = subprocess.run([sys.executable, "-c", code, ROOT, written], stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=lambda: os.close(1))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.strip() != "1", proc.stderr
    with open(written) as f:
        assert f.read() == ""


def test_a_hub_model_id_in_the_cache_is_loaded_not_called_an_unreadable_folder(tiny_model, tiny_data, tmp_path,
                                                                               monkeypatch):
    """--model_name_or_path user/model (no such folder here: a Hub id, read from the Hugging Face cache offline) loads
    its config and tokenizer; only a folder that exists and cannot be read is refused as unreadable (os.access of a
    name that is no path says no)."""
    import shutil
    import huggingface_hub.constants
    import transformers.utils.hub

    from conftest import hub_cache_repo
    from loop import models

    cache = str(tmp_path / "hub")
    snapshot = hub_cache_repo(cache, "someone/tiny", {})
    shutil.copytree(tiny_model, snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", cache, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = parse_args(tiny_args("someone/tiny", tiny_data, str(tmp_path / "out")))
    config = models.load_config(cfg)
    assert config.model_type and models.load_tokenizer(cfg, config, say=lambda *a: None).pad_token is not None


def test_training_data_of_the_runs_class_label_is_read_as_the_run_read_it_only_when_the_record_says_so(capsys):
    """--eval_only with training data: a ClassLabel (neg, pos) is read as the run's names (NEGATIVE, POSITIVE) only
    where best_metrics.json records those very classes in that order (in any case); a best/ of a loop that did not
    record them (no class_names), classes of another order, the model's own names, or --label_names given, is left
    to the usual reading (None), not a crash, a swapped reading or a line that says the classes were mapped."""
    from types import SimpleNamespace

    import datasets

    from loop.labels import classes_as_run_read

    def data(names):
        ds = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
        return ds.cast_column("label", datasets.ClassLabel(names=names))

    cfg = SimpleNamespace(label_column="label", label_list=lambda: None)
    model = ["NEGATIVE", "POSITIVE"]
    reading = {"label_ids": "positions", "label_names": ["NEGATIVE", "POSITIVE"], "class_names": ["neg", "pos"]}
    assert classes_as_run_read(cfg, data(["neg", "pos"]), model, reading) == ["NEGATIVE", "POSITIVE"]
    assert classes_as_run_read(cfg, data(["Neg", "POS"]), model, reading) == ["NEGATIVE", "POSITIVE"]
    assert "(Neg is 'NEGATIVE', POS is 'POSITIVE', from its best_metrics.json)" in capsys.readouterr().out
    older = {k: v for k, v in reading.items() if k != "class_names"}
    assert classes_as_run_read(cfg, data(["neg", "pos"]), model, older) is None
    assert classes_as_run_read(cfg, data(["pos", "neg"]), model, reading) is None
    own = dict(reading, class_names=["NEGATIVE", "POSITIVE"])
    assert classes_as_run_read(cfg, data(["NEGATIVE", "POSITIVE"]), model, own) is None
    named = SimpleNamespace(label_column="label", label_list=lambda: ["POSITIVE", "NEGATIVE"])
    assert classes_as_run_read(named, data(["neg", "pos"]), model, reading) is None
    assert capsys.readouterr().out == ""
