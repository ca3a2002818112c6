"""--config reading (loop/config_files.py) and checkpoint loading (loop/safe_load.py) rules that a mutation run
(audit70 m15) found unpinned: each test is in-process and quick (no data read, no model built)."""

import pytest

from loop.config import parse_args
from loop.config_files import yaml_to_argv
from loop.errors import UserError


def config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- loop/config_files.py
def test_a_yaml_merge_key_is_read_and_a_key_written_beside_it_wins_without_a_duplicate_refusal(tmp_path):
    """`<<: {...}` (YAML's merge key, how a file reuses an anchored block) gives its keys; a key written in the
    mapping itself replaces the merged one, and is not 'set twice'."""
    path = config(tmp_path, "<<: {seed: 3, learning_rate: 0.001}\nseed: 7\n")
    assert yaml_to_argv([path]) == ["--seed", "7", "--learning_rate", "0.001"]
    cfg = parse_args(["--config", path, "--output_dir", str(tmp_path / "o")])
    assert (cfg.seed, cfg.learning_rate) == (7, 0.001)


def test_a_yaml_key_that_is_a_list_is_one_line_naming_the_yaml_problem(tmp_path):
    """A complex key (`? [a, b]`) is YAML that cannot be a mapping key here: refused as not valid YAML with its
    line, not a TypeError traceback from the duplicate-key check."""
    path = config(tmp_path, "? [a, b]\n: 1\n")
    with pytest.raises(UserError, match=r"is not valid YAML at line 1 \(found unhashable key\)"):
        yaml_to_argv([path])


def test_a_number_key_given_twice_inside_a_mapping_option_is_refused_with_both_lines(tmp_path):
    """The duplicate-key check compares keys by their value: `0` twice in class_weights' mapping (PyYAML keeps the
    last silently) is refused, as a text key twice is."""
    path = config(tmp_path, "class_weights:\n  0: 1\n  0: 2\n")
    with pytest.raises(UserError, match=r"sets 0 twice \(lines 2 and 3\); keep one"):
        yaml_to_argv([path])
    path = config(tmp_path, "lr_scheduler_kwargs:\n  1.5: a\n  1.5: b\n")
    with pytest.raises(UserError, match=r"sets 1.5 twice \(lines 2 and 3\)"):
        yaml_to_argv([path])


def test_a_yaml_float_for_a_text_option_is_the_text_as_written(tmp_path):
    """`run_name: 1.10` is the text '1.10' (a version, a tag), not str(1.1); in a comma list too."""
    path = config(tmp_path, "run_name: 1.10\nlabel_names: [1.50, 2.0]\n")
    assert yaml_to_argv([path]) == ["--run_name", "1.10", "--label_names", "1.50,2.0"]
    assert parse_args(["--config", path, "--output_dir", str(tmp_path / "o")]).run_name == "1.10"


def test_an_empty_config_or_one_of_comments_only_sets_nothing(tmp_path):
    """A file whose options are all commented out (or an empty file) is no options, not a refusal."""
    for text in ("", "# seed: 3\n# learning_rate: 0.1\n"):
        path = config(tmp_path, text)
        assert yaml_to_argv([path]) == []
        assert parse_args(["--config", path, "--output_dir", str(tmp_path / "o")]).seed == 42


@pytest.mark.parametrize("text", ["seed 3\n", "- seed: 1\n", "3\n"])
def test_a_config_that_is_not_a_mapping_is_refused_in_one_line(tmp_path, text):
    """A missing colon (`seed 3` is the text 'seed 3'), a list or a number is not a mapping of options: said so,
    rather than its characters or items listed as unknown keys (or a crash)."""
    path = config(tmp_path, text)
    with pytest.raises(UserError, match=r"must be a mapping of option names to values\.$"):
        yaml_to_argv([path])


def test_an_options_key_that_is_not_a_mapping_is_an_unknown_key_not_a_run_record(tmp_path):
    """Only `options:` holding a mapping is a run record (training_args.json) given as a config; `options: 3` is
    an unknown key like any other."""
    path = config(tmp_path, "options: 3\n")
    with pytest.raises(UserError, match="has unknown keys: options;"):
        yaml_to_argv([path])
    path = config(tmp_path, '{"options": {"seed": 3}}', name="training_args.json")
    with pytest.raises(UserError, match=r"is a run record \(training_args.json\)"):
        yaml_to_argv([path])


def test_a_mapping_or_list_inside_a_list_option_and_a_bracketed_comma_are_refused(tmp_path):
    """`- neg: 0` under label_names (a mapping item) or `[[a]]` is refused, not the text "{'neg': 0}" taken as a
    label; a comma inside brackets splits every comma-list option but config_overrides, so it is refused there."""
    path = config(tmp_path, "label_names:\n  - neg: 0\n  - pos: 1\n")
    with pytest.raises(UserError, match="has a mapping inside the list of label_names"):
        yaml_to_argv([path])
    path = config(tmp_path, "label_names: [[neg]]\n")
    with pytest.raises(UserError, match="has a list inside the list of label_names"):
        yaml_to_argv([path])
    path = config(tmp_path, "lora_target_modules: ['q[0,1]']\n")
    with pytest.raises(UserError, match=r"lists 'q\[0,1\]' under lora_target_modules, .* would become 2 entries"):
        yaml_to_argv([path])


def test_a_yaml_on_for_a_switch_is_true_and_a_null_list_entry_is_not_the_text_none(tmp_path):
    """YAML 1.1's `on` is true: the switch's flag gets 'true' (the parser takes no 'on'); a `~` entry in a comma
    list is an empty entry (refused by the option's check), not a label called 'None'."""
    path = config(tmp_path, "from_scratch: on\n")
    assert yaml_to_argv([path]) == ["--from_scratch", "true"]
    assert parse_args(["--config", path, "--output_dir", str(tmp_path / "o")]).from_scratch is True
    path = config(tmp_path, "label_names: [a, b, ~]\n")
    assert yaml_to_argv([path]) == ["--label_names", "a,b,"]
    with pytest.raises(UserError, match="non-empty"):
        parse_args(["--config", path, "--output_dir", str(tmp_path / "o")])


# ---------------------------------------------------------------- loop/safe_load.py
def test_unsafe_globals_names_only_what_the_weights_only_load_refuses(tmp_path):
    """The check before a save and a resume: a checkpoint of numpy state (arrays, scalars, the RNG states) has
    nothing to name; one holding a class that runs code names that class, and only it."""
    import fractions

    import numpy as np
    import torch

    from loop.safe_load import unsafe_globals

    torch.save({"a": np.arange(3), "s": np.float64(1.5), "rng": np.random.get_state()}, tmp_path / "ok.pkl")
    assert unsafe_globals(str(tmp_path / "ok.pkl")) == []
    torch.save({"a": np.arange(3), "x": fractions.Fraction(1, 3)}, tmp_path / "code.pkl")
    assert unsafe_globals(str(tmp_path / "code.pkl")) == ["fractions.Fraction"]
    (tmp_path / "not_zip.pkl").write_bytes(b"not a checkpoint")
    assert unsafe_globals(str(tmp_path / "not_zip.pkl")) == []


def test_load_plain_leaves_torchs_safe_globals_exactly_as_they_were(tmp_path, monkeypatch):
    """load_plain widens torch's weights-only allow-list for its own load only: afterwards the list is exactly the
    one before (the caller's own entry kept, no numpy type left in), even where the load is refused. (Checked from
    a known list, so it does not depend on what earlier tests left there.)"""
    import fractions

    import numpy as np
    import torch

    from loop.safe_load import load_plain

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    saved = list(torch.serialization.get_safe_globals())
    try:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals([fractions.Fraction])
        torch.save({"a": np.arange(3)}, tmp_path / "ok.pkl")
        assert list(load_plain(str(tmp_path / "ok.pkl"))["a"]) == [0, 1, 2]
        assert torch.serialization.get_safe_globals() == [fractions.Fraction]
        torch.save({"d": __import__("collections").deque([1])}, tmp_path / "bad.pkl")
        with pytest.raises(Exception):
            load_plain(str(tmp_path / "bad.pkl"))
        assert torch.serialization.get_safe_globals() == [fractions.Fraction]
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def test_metadata_problems_of_no_paths_starts_no_process(monkeypatch):
    """A resume without sharded (FSDP) metadata has nothing to check: no child Python (a few seconds of import
    torch on every resume) is started for it."""
    import subprocess

    from loop.safe_load import metadata_problems

    def refuse(*a, **k):
        raise AssertionError("a child process was started for no paths")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert metadata_problems([]) == {}


def test_a_checkpoint_saved_under_numpy_1_loads_under_numpy_2(tmp_path):
    """numpy 1 pickles its arrays by the names numpy.core.multiarray._reconstruct and .scalar, numpy 2 by
    numpy._core: load_plain allowed only the running numpy's names, so every RNG state saved before a numpy
    upgrade was refused at the resume ('did not restore the random number generators', audit70 m15 F1)."""
    import random
    import zipfile

    import numpy as np
    import torch

    from loop.safe_load import load_plain, unsafe_globals

    if not hasattr(np, "_core"):
        pytest.skip("numpy 1 names its functions so itself")
    path = tmp_path / "random_states_0.pkl"
    state = {"random_state": random.getstate(), "numpy_random_seed": np.random.get_state(),
             "torch_manual_seed": torch.get_rng_state(), "scalar": np.float32(0.5)}
    torch.save(state, path)
    with zipfile.ZipFile(path) as z:  # the pickle as numpy 1 wrote it (protocol 2: the names are plain text)
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    assert any(b"numpy._core.multiarray" in data for i, data in entries if i.filename.endswith("data.pkl"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            z.writestr(info, data.replace(b"numpy._core.", b"numpy.core.") if info.filename.endswith("data.pkl")
                       else data)
    assert unsafe_globals(str(path)) == []
    loaded = load_plain(str(path))
    assert loaded["numpy_random_seed"][0] == state["numpy_random_seed"][0]
    assert (loaded["numpy_random_seed"][1] == state["numpy_random_seed"][1]).all()
    assert loaded["scalar"] == np.float32(0.5) and torch.equal(loaded["torch_manual_seed"], state["torch_manual_seed"])
