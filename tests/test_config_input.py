"""User input to the config: a `--config` YAML (repeated keys, YAML 1.1 typing of text options, lists and
nulls), `~` in paths, columns that must differ, a --validation_split_percentage that is ignored, and
--help's defaults. In-process and quick: no training."""

import argparse
import os
import re
import warnings
from types import SimpleNamespace

import pytest

from test_errors import check_user_error
from loop.config import TrainConfig, _HelpFormatter, _Parser, parse_args
from loop.config_files import yaml_to_argv
from loop.errors import UserError
from loop.errors import run_cli as run_main


def yaml_file(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def user_error(capsys, argv, *words):
    """parse_args(argv) through the CLI's own run_cli: exit 2 and one `error:` line, one sentence, with `words`."""
    with pytest.raises(SystemExit) as e:
        run_main(parse_args, argv)
    err = capsys.readouterr().err
    return check_user_error(SimpleNamespace(returncode=e.value.code, stderr=err), *words)


def message(fn, *args):
    with pytest.raises(UserError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


@pytest.fixture
def out(tmp_path):
    return ["--output_dir", str(tmp_path / "out")]


# ---------------------------------------------------------------- 1. a key given twice
def test_yaml_key_given_twice_is_refused_with_both_lines(tmp_path, out, capsys):
    path = yaml_file(tmp_path, "learning_rate: 1.0e-3\nnum_train_epochs: 2\n\n# later\nlearning_rate: 5.0e-2\n")
    assert message(yaml_to_argv, path) == f"--config {path} sets learning_rate twice (lines 1 and 5); keep one."
    line = user_error(capsys, ["--config", path] + out, "--config", path, "learning_rate twice", "lines 1 and 5")
    assert line == f"error: --config {path} sets learning_rate twice (lines 1 and 5); keep one."
    # one key of each name is as before
    once = yaml_file(tmp_path, "learning_rate: 5.0e-2\n", "ok.yaml")
    assert parse_args(["--config", once] + out).learning_rate == 0.05


def test_a_config_file_not_in_utf8_or_a_folder_is_one_line(tmp_path, out, capsys):
    """A latin-1 comment or a UTF-16 file was a UnicodeDecodeError traceback (PyYAML's reader), a folder 'does
    not exist' (audit57 c F1, F6)."""
    for name, raw in (("latin1.yaml", b"# r\xe9glages\nmax_length: 32\n"),
                      ("utf16.yaml", "max_length: 32\n".encode("utf-16"))):
        path = tmp_path / name
        path.write_bytes(raw)
        user_error(capsys, ["--config", str(path)] + out, f"--config {path} is not UTF-8 text", "save it as UTF-8")
    user_error(capsys, ["--config", str(tmp_path)] + out, f"--config {tmp_path} is a folder; name the YAML file in it")


def test_unknown_options_name_what_does_their_job(tmp_path, out, capsys):
    """A Trainer name gets the option that does its job (--save_steps was pointed at --max_steps, its nearest
    spelling: 100 training steps instead of a checkpoint every 100); a typo gets the nearest option; a
    YAML key gets the same hints, and learning-rate (the flag's spelling) is told to use learning_rate."""
    line = user_error(capsys, ["--save_steps", "100"] + out, "--save_steps")
    assert line == ("error: unrecognized argument '--save_steps'; for --save_steps use --checkpointing_steps N; see "
                    "--help for the options.")
    assert "accelerate launch --mixed_precision bf16" in user_error(capsys, ["--bf16"] + out, "--bf16")
    assert "for --metric_for_best_model use --metric;" in user_error(capsys, ["--metric_for_best_model=f1"] + out)
    for old in ("--eval_strategy", "--evaluation_strategy"):  # the older spelling's was only '--eval_steps N' (N7)
        assert f"for {old} use --eval_steps N (epoch ends are always evaluated);" in user_error(
            capsys, [old, "epoch"] + out)
    assert "the nearest option is --learning_rate;" in user_error(capsys, ["--learnin_rate", "1"] + out)
    assert "--do_train is not needed here (train.py trains);" in user_error(capsys, ["--do_train"] + out)
    # run_glue's model arguments (--cache_dir was 'the nearest option is ...', audit61 h9)
    assert "for --cache_dir use HF_HUB_CACHE (models) and HF_DATASETS_CACHE" in user_error(
        capsys, ["--cache_dir", "/scratch/hf"] + out)
    assert "for --model_revision use a local copy of that revision" in user_error(capsys, ["--model_revision", "v2"] + out)
    # Trainer's own arguments, as the README's table maps them (--eval_dataset was 'the nearest option is
    # --eval_on_start': audit59 h3)
    assert "for --eval_dataset use --validation_file (and --extra_eval_files NAME=FILE for more sets);" in \
        user_error(capsys, ["--eval_dataset", "ood.jsonl"] + out)
    assert "for --compute_loss_func use an override of compute_loss" in user_error(capsys, ["--compute_loss_func", "f"]
                                                                                     + out)
    # a Trainer option with no counterpart is said to be one, not matched to an option that does something else
    for flag, wrong in (("--eval_delay", "--eval_only"), ("--length_column_name", "--weight_column"),
                        ("--eval_accumulation_steps", "--gradient_accumulation_steps"),
                        ("--ignore_data_skip", "--ignore_mismatched_sizes")):
        line = user_error(capsys, [flag, "1"] + out, flag)
        assert f"{flag} is a Trainer option with no counterpart here (README: Coming from Trainer);" in line
        assert wrong not in line, line
    assert "--optim_args use an override of build_optimizer" in user_error(capsys, ["--optim_args", "x"] + out)
    assert "(accelerate launch, torchrun) gives each process its rank" in user_error(capsys, ["--local_rank=1"] + out)
    path = yaml_file(tmp_path, "learning-rate: 0.1\nsave_steps: 5\nnum_epochs: 2\nzzzq: 1\n")
    assert message(yaml_to_argv, path) == (
        f"--config {path} has unknown keys: learning-rate, num_epochs, save_steps, zzzq; write learning-rate as "
        f"learning_rate; the nearest option is num_train_epochs; for save_steps use --checkpointing_steps N; see "
        f"--help for the options.")


def test_other_scripts_short_names_and_words_of_ours_get_the_option(tmp_path, out, capsys):
    """--epochs, --lr, --model (a nanoGPT- or argparse-example habit) got no hint at all, --data got --data_seed (the
    nearest spelling) and --eval_batch got --eval_steps: now the option that does the job, or every option that has
    the word in its name (audit67 N10)."""
    for flag, says in (("--epochs", "for --epochs use --num_train_epochs;"), ("--lr", "for --lr use --learning_rate;"),
                       ("--model", "for --model use --model_name_or_path;"),
                       ("--data", "for --data use --train_file (a local file) or --dataset_name (the Hub);"),
                       ("--eval_batch", "the nearest option is --per_device_eval_batch_size;"),
                       ("--warmup", "options with 'warmup' in their name: --warmup_ratio, --warmup_steps;"),
                       ("--steps", "options with 'steps' in their name: --max_steps, --warmup_steps, "
                                   "--gradient_accumulation_steps, --eval_steps, ...;"),
                       ("--seeds", "the nearest option is --seed;"),
                       ("--max_epochs", "for --max_epochs use --num_train_epochs;"),  # not --max_steps (review r F6)
                       ("--eval_bs", "for --eval_bs use --per_device_eval_batch_size;"),
                       ("--use_lora", "for --use_lora use --lora_r N (LoRA of rank N; 0, the default, trains every "
                                      "weight);")):
        line = user_error(capsys, [flag, "1"] + out, flag)
        assert line == f"error: unrecognized argument '{flag}'; {says} see --help for the options.", line
    path = yaml_file(tmp_path, "warmup: 3\n")
    assert message(yaml_to_argv, path) == (f"--config {path} has unknown keys: warmup; options with 'warmup' in their "
                                           f"name: warmup_ratio, warmup_steps; see --help for the options.")


# ---------------------------------------------------------------- 2. YAML typing of text options
def test_yaml_boolean_for_a_text_option_is_refused_naming_the_quotes(tmp_path, out, capsys):
    path = yaml_file(tmp_path, "label_names: [NO, YES]\n")
    msg = message(yaml_to_argv, path)
    assert "label_names" in msg and "false" in msg and "write 'NO' in quotes" in msg, msg
    user_error(capsys, ["--config", path] + out, "--config", "label_names", "write 'NO' in quotes")
    msg = message(yaml_to_argv, yaml_file(tmp_path, "eval_split: off\n", "e.yaml"))
    assert "eval_split" in msg and "write 'off' in quotes" in msg, msg
    # quoted, they are text; numbers for a text option stay as written (010 is not 8)
    cfg = parse_args(["--config", yaml_file(tmp_path, "label_names: ['NO', 'YES']\ndataset_config_name: 010\n"
                                                      "from_scratch: yes\n", "q.yaml")] + out)
    assert cfg.label_list() == ["NO", "YES"] and cfg.dataset_config_name == "010" and cfg.from_scratch is True


def test_yaml_boolean_for_a_number_option_is_refused_naming_it(tmp_path, out, capsys):
    user_error(capsys, ["--config", yaml_file(tmp_path, "max_length: yes\n")] + out, "--max_length", "'yes'")


def test_yaml_list_for_a_one_value_option_is_refused(tmp_path, out, capsys):
    path = yaml_file(tmp_path, "train_file: [a.jsonl, b.jsonl]\n")
    msg = message(yaml_to_argv, path)
    assert "train_file" in msg and "a list" in msg and "takes one value" in msg, msg
    user_error(capsys, ["--config", path] + out, "train_file", "takes one value")
    msg = message(yaml_to_argv, yaml_file(tmp_path, "model_name_or_path: {name: x}\n", "m.yaml"))
    assert "model_name_or_path" in msg and "a mapping" in msg, msg


def test_yaml_list_for_a_comma_list_option_is_joined_and_a_comma_inside_refused(tmp_path, out, capsys):
    path = yaml_file(tmp_path, "label_names: [NEG, POS]\nmetrics: [accuracy, f1]\n"
                               "config_overrides: ['n_layers=2', 'layer_types=[full,sliding]']\n")
    cfg = parse_args(["--config", path] + out)
    assert cfg.label_list() == ["NEG", "POS"] and cfg.metric_list() == ["accuracy", "f1"]
    assert cfg.overrides_dict() == {"n_layers": "2", "layer_types": "[full,sliding]"}
    path = yaml_file(tmp_path, "label_names: ['bad, awful', good]\n", "comma.yaml")
    msg = message(yaml_to_argv, path)
    assert "'bad, awful'" in msg and "label_names" in msg and "2 entries" in msg, msg
    user_error(capsys, ["--config", path] + out, "label_names", "'bad, awful'", "split at commas")


def test_yaml_list_for_a_variants_list_field_gives_its_items(tmp_path, out):
    """A variant's List[str] / Optional[List[int]] field (HfArgumentParser's nargs="+"): a YAML list gives one
    value per item (was: one value 'good,bad', or an int parse error of '1,2'), a scalar one item, YAML 1.1's
    numbers as written; the flags override the file."""
    from dataclasses import dataclass, field
    from typing import List, Optional

    @dataclass
    class ListConfig(TrainConfig):
        words: List[str] = field(default_factory=lambda: ["a"], metadata={"help": "Words."})
        ids: Optional[List[int]] = field(default=None, metadata={"help": "Ids."})

    path = yaml_file(tmp_path, "words: [good, bad, 'x,y']\nids: [1, 2, 010]\n")
    cfg = parse_args(["--config", path] + out, ListConfig)
    assert (cfg.words, cfg.ids) == (["good", "bad", "x,y"], [1, 2, 10])
    cfg = parse_args(["--config", yaml_file(tmp_path, "words: one\nids: 3\n", "s.yaml")] + out, ListConfig)
    assert (cfg.words, cfg.ids) == (["one"], [3])
    cfg = parse_args(["--config", path, "--words", "c", "d"] + out, ListConfig)
    assert (cfg.words, cfg.ids) == (["c", "d"], [1, 2, 10])


def test_yaml_empty_list_and_null_reach_a_variants_list_field(tmp_path, out):
    """`[]` (no flag can give an empty nargs="+" list) and `~` for a variant's list field silently kept its
    default (a variant that unfreezes `layers` did so against the file); now they give [] and None, given like any
    option, a flag still wins, and `~` for a field that cannot be None is refused as for the loop's own."""
    from dataclasses import dataclass, field
    from typing import List, Optional

    @dataclass
    class ListConfig(TrainConfig):
        words: List[str] = field(default_factory=lambda: ["the", "a"], metadata={"help": "Words."})
        layers: Optional[List[int]] = field(default_factory=lambda: [10, 11], metadata={"help": "Layers."})

    cfg = parse_args(["--config", yaml_file(tmp_path, "words: []\nlayers: ~\n")] + out, ListConfig)
    assert (cfg.words, cfg.layers) == ([], None)
    assert {"words", "layers"} <= cfg.given_options
    cfg = parse_args(["--config", yaml_file(tmp_path, "words: []\nlayers: []\n", "e.yaml"), "--words", "x"] + out,
                     ListConfig)
    assert (cfg.words, cfg.layers) == (["x"], [])
    assert parse_args(out, ListConfig).words == ["the", "a"]  # the default when nothing gives it
    path = yaml_file(tmp_path, "words: ~\n", "n.yaml")
    with pytest.raises(UserError, match="gives words no value \\(null\\), but --words needs one"):
        parse_args(["--config", path] + out, ListConfig)


def test_yaml_null_unsets_an_optional_option_and_is_refused_for_a_required_one(tmp_path, out, capsys):
    path = yaml_file(tmp_path, "dataset_name: ~\ntokenizer_name: ~\nmax_length:\nmetric: ~\n")
    cfg = parse_args(["--config", path] + out)
    assert (cfg.dataset_name, cfg.tokenizer_name, cfg.max_length, cfg.metric) == (None, None, None, "accuracy")
    assert parse_args(["--config", path, "--dataset_name", "ag_news"] + out).dataset_name == "ag_news"  # flags win
    path = yaml_file(tmp_path, "learning_rate:\n", "lr.yaml")
    msg = message(yaml_to_argv, path)
    assert "learning_rate" in msg and "no value" in msg, msg
    user_error(capsys, ["--config", path] + out, "learning_rate", "no value")


# ---------------------------------------------------------------- 3. ~ in paths
def test_tilde_in_paths_is_the_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    monkeypatch.setenv("HOME", str(home))
    path = yaml_file(tmp_path, "output_dir: ~/runs/x\ntrain_file: ~/data/train.jsonl\ntokenizer_name: ~/tok\n")
    cfg = parse_args(["--config", path])
    assert cfg.output_dir == str(home / "runs" / "x")
    assert cfg.train_file == str(home / "data" / "train.jsonl") and cfg.tokenizer_name == str(home / "tok")
    # on the command line too (a quoted '~/x' reaches us unexpanded); Hub ids and 'latest' are left alone
    cfg = parse_args(["--output_dir", "~/runs/y", "--model_name_or_path", "~/models/m",
                      "--resume_from_checkpoint", "latest"])
    assert cfg.output_dir == str(home / "runs" / "y") and cfg.model_name_or_path == str(home / "models" / "m")
    assert cfg.resume_from_checkpoint == "latest" and cfg.dataset_name == "imdb"
    assert parse_args(["--output_dir", str(tmp_path / "o")]).model_name_or_path == "distilbert-base-uncased"
    # --config=~/x.yaml (no shell expands it after '='): the home folder too (was "does not exist", audit61)
    (home / "c.yaml").write_text("learning_rate: 0.001\n")
    assert parse_args(["--config=~/c.yaml", "--output_dir", str(tmp_path / "o")]).learning_rate == 0.001


def test_a_path_that_is_not_utf8_is_one_line_at_the_start(tmp_path, monkeypatch):
    """A Latin-1 name ('lat\\xe9n', read by Python as a lone surrogate) as output_dir trained to the end and failed
    saving the tokenizer; as a data file, writing the model card: best/ lost either way (audit61)."""
    for flag in ("--output_dir", "--train_file", "--model_name_or_path"):
        argv = ["--output_dir", str(tmp_path / "o"), flag, str(tmp_path / "lat\udce9n")]
        with pytest.raises(UserError) as e:
            parse_args(argv)
        assert str(e.value) == (f"{flag} is not UTF-8 (a byte 0xe9 in '{str(tmp_path)[-16:]}/lat\ufffdn'); rename it "
                                f"in UTF-8 (e.g. convmv -f latin1 -t utf8), or give a link to it under a UTF-8 name.")
    # a relative output_dir in a current folder whose name is not UTF-8 (r2): its whole path is what is saved into
    (tmp_path / "caf\udce9").mkdir()
    monkeypatch.chdir(tmp_path / "caf\udce9")
    with pytest.raises(UserError, match="--output_dir is not UTF-8 \\(a byte 0xe9 in '.*caf\ufffd/out'\\)"):
        parse_args(["--output_dir", "out"])
    with pytest.raises(UserError, match="--extra_eval_files is not UTF-8 \\(a byte 0xe9 in 'ood=lat"):
        parse_args(["--output_dir", str(tmp_path / "o"), "--extra_eval_files", "ood=lat\udce9n.jsonl"])


def test_yaml_that_does_not_parse_names_its_line_and_the_quoting(tmp_path, capsys):
    """`train_file: *.jsonl` (an alias to YAML) or `[1].jsonl` (a list) was 'not valid YAML (while scanning an
    alias)': no line, no hint (audit61 w7)."""
    path = yaml_file(tmp_path, "learning_rate: 0.001\ntrain_file: *.jsonl\n")
    msg = message(parse_args, ["--config", path])
    assert msg.startswith(f"--config {path} is not valid YAML at line 2 (") and "e.g. train_file: '*.jsonl'" in msg
    user_error(capsys, ["--config", path], "line 2", "quote a value")
    # an unclosed list is found at the end of the file: the line it starts on, and no quoting hint where the
    # value is YAML syntax meant as such (r2)
    path = yaml_file(tmp_path, "learning_rate: 0.001\nlabel_names: [a, b\n", name="b.yaml")
    msg = message(parse_args, ["--config", path])
    assert msg.startswith(f"--config {path} is not valid YAML at line 2 (") and "quote" in msg  # '[a, b' begins with [
    path = yaml_file(tmp_path, "learning_rate: 0.001\n\tseed: 3\n", name="t.yaml")
    msg = message(parse_args, ["--config", path])
    assert msg.startswith(f"--config {path} is not valid YAML at line 2 (") and "quote" not in msg, msg


def test_a_pattern_through_a_folder_whose_name_holds_brackets_says_how_to_match_them(tmp_path):
    """'g[1]/t-*.jsonl': '[1]' is a character class to glob, so nothing matched, and the message said only to quote
    the pattern (audit61 w5); it names the brackets and the pattern that matches them as written."""
    from loop.config import data_files

    (tmp_path / "g[1]").mkdir()
    (tmp_path / "g[1]" / "t-1.jsonl").write_text('{"text": "a", "label": 0}\n')
    msg = message(data_files, f"{tmp_path}/g[1]/t-*.jsonl", "--train_file")
    assert msg.endswith(f"to match them as written, put each in brackets: '{tmp_path}/g[[]1[]]/t-*.jsonl'."), msg
    assert data_files(f"{tmp_path}/g[[]1[]]/t-*.jsonl", "--train_file") == [f"{tmp_path}/g[1]/t-1.jsonl"]
    assert "check the pattern" in message(data_files, f"{tmp_path}/g[1]/nothing-*.jsonl", "--train_file")


def test_an_output_dir_on_a_read_only_filesystem_is_said_so(tmp_path, monkeypatch):
    """A read-only mount said "read-only for this user; fix its permissions", which no permission fixes (w9)."""
    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    msg = message(parse_args, ["--output_dir", str(tmp_path / "out")])
    assert msg == (f"--output_dir '{tmp_path / 'out'}' is on a read-only filesystem ('{tmp_path}'); choose a folder "
                   f"on a writable disk.")


# ---------------------------------------------------------------- 4. columns that must differ
@pytest.mark.parametrize("flags, a, b", [
    (["--text_column", "label"], "--text_column", "--label_column"),
    (["--text_pair_column", "text"], "--text_pair_column", "--text_column"),
    (["--text_pair_column", "y", "--label_column", "y"], "--text_pair_column", "--label_column"),
], ids=["text-is-label", "pair-is-text", "pair-is-label"])
def test_columns_that_must_differ(out, capsys, flags, a, b):
    value = flags[1]
    msg = message(parse_args, flags + out)
    assert a in msg and b in msg and f"'{value}'" in msg, msg
    user_error(capsys, flags + out, a, b, f"'{value}'")


# ---------------------------------------------------------------- 5. an ignored --validation_split_percentage
def test_validation_split_percentage_with_evaluation_data_warns(tmp_path, out):
    for name in ("t.jsonl", "v.jsonl"):
        (tmp_path / name).write_text('{"text": "a", "label": 0}\n')
    files = ["--train_file", str(tmp_path / "t.jsonl"), "--validation_file", str(tmp_path / "v.jsonl")]
    with pytest.warns(UserWarning, match=r"--validation_split_percentage 10 is used only when there is no "
                                         r"evaluation data, and --validation_file gives it") as caught:
        parse_args(files + ["--validation_split_percentage", "10"] + out)
    assert len([w for w in caught if "validation_split_percentage" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match=r"--validation_split_percentage 5 .* --eval_split gives it"):
        parse_args(["--eval_split", "test", "--validation_split_percentage", "5"] + out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # carving from a training file alone, or evaluation data alone: no warning
        parse_args(files[:2] + ["--validation_split_percentage", "10"] + out)
        parse_args(files + out)


# ---------------------------------------------------------------- 6. --help: one default each
def test_help_shows_every_default_once(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(NCCL's own limit is 600: the main process alone verifying or writing a large checkpoint, or " \
           "tokenizing, can take longer). (default: 1800)" in text
    formatter = _HelpFormatter("train.py")
    parser = _Parser(TrainConfig)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        shown = formatter._get_help_string(action)
        stated = shown.count("(default") + shown.count("Default:") + shown.count("by default")
        assert stated <= 1, shown
        if action.default is not None and not isinstance(action.default, bool):
            assert stated == 1, shown  # a value default is always shown
    # the word alone in a help text (another program's default, a mode named 'default') does not hide ours
    mentions = argparse._StoreAction(["--x"], "x", default=7, help="Waits (the library's default is 5).")
    assert formatter._get_help_string(mentions) == "Waits (the library's default is 5). (default: 7)"
    states = argparse._StoreAction(["--x"], "x", default=7, help="Waits (default: twice the library's).")
    assert formatter._get_help_string(states) == "Waits (default: twice the library's)."


def test_every_option_is_in_the_readme_options_table():
    """The README's Options table is where users look an option up: every TrainConfig field has a row."""
    import dataclasses
    import os

    from conftest import ROOT

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("## Options")
    table = text[start:text.index("\n## ", start + 1)]
    missing = [f"--{f.name}" for f in dataclasses.fields(TrainConfig) if f"`--{f.name}`" not in table]
    assert not missing, f"not in the README's Options table: {missing}"


def test_several_configs_layer_and_numbers_read_as_their_flags(tmp_path):
    """`--config base.yaml --config mine.yaml` kept only the last file: every option of the first fell back to its
    default without a word (the model became distilbert-base-uncased, the data the Hub's imdb). They layer now: a
    later file's key wins, whatever the earlier value, and flags win over both. A YAML number is read as its flag
    reads it: YAML 1.1 made `seed: 0042` octal 34 and `eval_steps: 010` 8 (the flags: 42 and 10) (audit34)."""
    (tmp_path / "t.jsonl").write_text('{"text": "fine", "label": "a"}\n')
    base = yaml_file(tmp_path, f"model_name_or_path: some/model\ntrain_file: {tmp_path / 't.jsonl'}\nmax_length: 64\n"
                               "label_names: [a, b]\nlearning_rate: 1.0e-3\n", "base.yaml")
    mine = yaml_file(tmp_path, "learning_rate: 5.0e-4\nlabel_names: ~\nseed: 0042\neval_steps: 010\n", "mine.yaml")
    cfg = parse_args(["--config", base, "--config", mine, "--max_length", "32"])
    assert (cfg.model_name_or_path, cfg.train_file, cfg.learning_rate, cfg.max_length) == \
        ("some/model", str(tmp_path / "t.jsonl"), 5e-4, 32)
    assert cfg.label_names is None and cfg.label_list() is None  # unset by the later file
    assert (cfg.seed, cfg.eval_steps) == (42, 10)
    assert {"model_name_or_path", "train_file", "learning_rate", "seed", "label_names"} <= cfg.given_options
    assert parse_args(["--config", mine, "--config", base]).learning_rate == 1e-3  # the order decides
    assert parse_args(["--config", yaml_file(tmp_path, "max_steps: 1_000\n", "u.yaml")]).max_steps == 1000
    with pytest.raises(UserError, match=r"--max_grad_norm must be a finite number, got inf"):  # YAML's .inf: as the flag
        parse_args(["--config", yaml_file(tmp_path, "max_grad_norm: .inf\n", "i.yaml")])
    with pytest.raises(UserError, match=r"--max_steps.*invalid int value: '1:30'"):  # sexagesimal 90, as the flag
        parse_args(["--config", yaml_file(tmp_path, "max_steps: 1:30\n", "s.yaml")])


def test_options_that_would_do_nothing_are_said(recwarn):
    """--lora_dropout without --lora_r, --dataset_config_name beside local files and --save_total_limit without
    checkpoints did nothing, silently, where their siblings (--lora_alpha, --eval_split, --hub_model_id) are refused
    or warned about (audit34)."""
    with pytest.raises(UserError, match=r"--lora_dropout applies only with --lora_r"):
        parse_args(["--lora_dropout", "0.3"])
    assert parse_args(["--lora_r", "4", "--lora_dropout", "0.3"]).lora_dropout == 0.3
    with pytest.raises(UserError, match=r"--dataset_config_name picks a configuration of --dataset_name, but "
                                        r"--train_file replaces the Hub dataset"):
        parse_args(["--train_file", "configs/smoke/train.jsonl", "--dataset_config_name", "plain_text"])
    with pytest.warns(UserWarning, match=r"--save_total_limit 2 keeps the newest checkpoints, but without "
                                         r"--checkpointing_steps only a stop signal saves one"):
        parse_args(["--save_total_limit", "2"])
    recwarn.clear()
    parse_args(["--save_total_limit", "2", "--checkpointing_steps", "10"])
    assert not [w for w in recwarn if "save_total_limit" in str(w.message)]


@pytest.mark.parametrize("steps", ["²", "٣", "0", "-5", "ten"])
def test_checkpointing_steps_not_a_positive_integer_is_one_line(steps):
    """str.isdigit() takes "²" and "٣" (audit47 F6's labels too): int() then raised a ValueError traceback."""
    with pytest.raises(UserError, match=rf"^--checkpointing_steps must be a whole number of steps \(1 or more\), or a "
                                        rf"fraction of the run's steps between 0 and 1 \(0.25\), or 'epoch', "
                                        rf"got '?{steps}'?\.$"):
        parse_args(["--checkpointing_steps", steps])
    assert parse_args(["--checkpointing_steps", "20"]).checkpointing_steps in ("20", 20)


def test_checkpointing_steps_given_as_a_number_in_code_is_its_text():
    """TrainConfig(checkpointing_steps=10) in a notebook was refused ('must be text, got 10'), though the flag's
    '10' and a YAML 10 are taken (review rev F5)."""
    from loop.config import TrainConfig

    assert [TrainConfig(checkpointing_steps=v).checkpointing_steps for v in (10, 10.0, 0.25)] == ["10", "10", "0.25"]
    quarter = TrainConfig(checkpointing_steps=0.25)
    quarter.run_steps = 100  # (Loop.setup sets it)
    assert quarter.checkpoint_every == 25
    with pytest.raises(UserError, match=r"^--checkpointing_steps must be a whole number of steps \(1 or more\)"):
        TrainConfig(checkpointing_steps=0)


def test_a_prefix_of_an_option_is_not_the_option(tmp_path):
    """audit50 F2: argparse took a unique prefix as the option (--max_step 7 trained 7 steps without a word, where
    the same key in YAML is refused) and called --learn "ambiguous" between --learning_rate and its own
    --learning-rate spelling. Only whole names are options now; the nearest one is named."""
    out = ["--output_dir", str(tmp_path / "out")]
    for flag, says in (("--max_step", "unrecognized argument '--max_step'; the nearest option is --max_steps"),
                       ("--learn", "unrecognized argument '--learn'"),
                       ("--per_device_train", "unrecognized argument '--per_device_train'")):
        with pytest.raises(UserError, match=re.escape(says)):
            parse_args([flag, "7", *out])
    with pytest.raises(UserError, match="unrecognized argument '--conf'"):  # not --config
        parse_args(["--conf", str(tmp_path / "c.yaml"), *out])
    assert parse_args(["--max_steps", "7", "--learning-rate", "0.5", *out]).max_steps == 7  # whole names, both spellings


def test_a_validation_file_without_a_train_file_is_one_line(tmp_path):
    """--validation_file alone (training) is refused at parse time (without the check: KeyError 'train')."""
    from loop import UserError, parse_args

    (tmp_path / "v.jsonl").write_text('{"text": "good", "label": "POSITIVE"}\n')
    with pytest.raises(UserError, match=r"^--validation_file needs --train_file too"):
        parse_args(["--validation_file", str(tmp_path / "v.jsonl"), "--output_dir", str(tmp_path / "o")])


def test_yaml_aliases_that_expand_without_end_are_refused_at_once(tmp_path):
    """491 bytes of aliases of aliases under lr_scheduler_kwargs expanded to 10**9 values: 50 s and 2.5 GB, then a
    MemoryError traceback (audit62 s4). A mapping option's values are counted as they expand; a plain alias works."""
    import time

    lines = ["lr_scheduler_kwargs:", "  k0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"  k{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = yaml_file(tmp_path, "\n".join(lines) + "\n")
    started = time.perf_counter()
    assert message(yaml_to_argv, path) == (f"--config {path} sets lr_scheduler_kwargs to more than 100,000 values "
                                           f"(aliases, *name, repeating other values); write the values it takes out.")
    assert time.perf_counter() - started < 5
    fine = yaml_file(tmp_path, "lr_scheduler_kwargs: {power: &p 2.0, again: *p}\n", name="fine.yaml")
    assert yaml_to_argv([fine]) == ["--lr_scheduler_kwargs", '{"power": 2.0, "again": 2.0}']


def test_parse_args_in_a_notebook_does_not_read_the_kernels_arguments(monkeypatch, tmp_path):
    """parse_args() in Jupyter read the kernel's own argv (-f kernel.json) and refused it as an unknown option
    (audit62 n14): a notebook's argv holds no options of ours, so none are read (parse_args([...]) takes them)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    for kernel in (["ipykernel_launcher.py", "-f", str(tmp_path / "kernel-1.json")],  # Jupyter, Colab
                   ["/x/ipykernel_launcher.py", "--ip=127.0.0.1", f"--f={tmp_path / 'kernel-v2-1.json'}"]):  # VS Code
        monkeypatch.setattr(sys, "argv", kernel)
        assert parse_args().output_dir == TrainConfig().output_dir
        assert parse_args(["--output_dir", str(tmp_path / "o")]).output_dir == str(tmp_path / "o")
    monkeypatch.setattr(sys, "argv", ["train.py", "-f", "x", "--output_dir", "mine"])  # %run train.py in a notebook:
    with pytest.raises(UserError):  # its own options, read (and a stray -f refused, not dropped with the rest)
        parse_args()


def test_a_relative_data_path_not_found_names_the_folder_it_was_read_from(tmp_path, out, capsys, monkeypatch):
    """The shipped configs/smoke.yaml run from another folder said "--train_file 'configs/smoke/train.jsonl' does not
    exist; check the path" for a file that exists (beside the YAML's folder's parent): a YAML's relative paths are
    read from the current folder, which the line now names (audit66 N2). An absolute path is said as before."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    path = yaml_file(tmp_path, "train_file: data/train.jsonl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    line = user_error(capsys, ["--config", path] + out, "--train_file")
    assert line == (f"error: --train_file 'data/train.jsonl' does not exist in {elsewhere}; check the path (a "
                    f"relative one is read from the current folder, also in a --config file)."), line
    missing = str(tmp_path / "nope.jsonl")
    line = user_error(capsys, ["--train_file", missing] + out, "--train_file")
    assert line == f"error: --train_file '{missing}' does not exist; check the path.", line
    monkeypatch.chdir(tmp_path)
    assert parse_args(["--config", path] + out).train_file == "data/train.jsonl"
