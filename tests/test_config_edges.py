"""Edges of the config's input found by audit 67: values that begin with '-' (in a --config file and as flags), a
--dataset_name that a local file replaces, control characters in paths (a YAML escape), a --config that is not a
regular file, a JSON config indented with tabs, an argparse refusal of a --config's value, a run record given as a
--config. In-process and quick: no training."""

import os
import warnings

import pytest

from test_config_input import user_error, yaml_file
from loop.config import parse_args
from loop.config_files import yaml_to_argv
from loop.errors import UserError


def test_config_values_that_begin_with_a_dash_are_read(tmp_path):
    """`label_names: ['-1', '1']`, `run_name: -exp`, `text_column: -x` went in as ['--key', '-…'], which argparse
    took for an option: "argument --label_names: expected one argument". Now '--key=-…'."""
    path = yaml_file(tmp_path, "label_names: ['-1', '1']\nrun_name: -exp\ntext_column: -x\nlearning_rate: -1e-3\n")
    assert yaml_to_argv(path) == ["--label_names=-1,1", "--run_name=-exp", "--text_column=-x",
                                  "--learning_rate=-1e-3"]
    cfg = parse_args(["--config", path, "--learning_rate", "1e-3", "--output_dir", str(tmp_path / "o")])
    assert (cfg.label_names, cfg.run_name, cfg.text_column) == ("-1,1", "-exp", "-x")
    assert {"label_names", "run_name", "text_column"} <= cfg.given_options  # the probe's parse reads them too
    assert yaml_to_argv(yaml_file(tmp_path, "run_name: exp\n", "p.yaml")) == ["--run_name", "exp"]  # as before


def test_a_flag_value_that_begins_with_a_dash_is_refused_with_the_equals_form(capsys):
    """`--label_names -1,1`: argparse's "expected one argument" now says to write --label_names=-1,1 (the spelling
    typed); a flag followed by another flag (a forgotten value) keeps the plain refusal."""
    user_error(capsys, ["--label_names", "-1,1"], "write --label_names=-1,1", "begins with '-'")
    user_error(capsys, ["--run-name", "-exp"], "write --run-name=-exp")
    line = user_error(capsys, ["--label_names", "--seed", "3"], "expected one argument", "see --help")
    assert "write" not in line
    assert parse_args(["--label_names=-1,1"]).label_names == "-1,1"


def test_a_dash_value_beside_a_config_that_sets_it_and_a_variants_list_option(tmp_path, capsys):
    """(review r2 R2-4, R2-5) the hint looked at the --config's value of the flag first and was lost; a variant's
    list option (nargs="+") with an item that begins with '-' had no way to be written in a --config."""
    from dataclasses import dataclass, field

    from loop import TrainConfig

    path = yaml_file(tmp_path, "label_names: [a, b]\n")
    user_error(capsys, ["--config", path, "--label_names", "-1,1"], "write --label_names=-1,1")

    @dataclass
    class Tagged(TrainConfig):
        tags: list[str] = field(default_factory=list, metadata={"help": "tags"})

    path = yaml_file(tmp_path, "tags: ['-a', b]\n", "t.yaml")
    assert parse_args(["--config", path, "--output_dir", str(tmp_path / "o")], Tagged).tags == ["-a", "b"]
    assert parse_args(["--config", path, "--tags", "c", "--output_dir", str(tmp_path / "o")], Tagged).tags == ["c"]

    @dataclass
    class Layered(TrainConfig):  # negative numbers are values to argparse: typed as a flag's are (review r3 R3-1)
        layers: list[int] = field(default_factory=list, metadata={"help": "layers"})
        scales: list[float] = field(default_factory=list, metadata={"help": "scales"})

    path = yaml_file(tmp_path, "layers: [-1, -2]\nscales: [-0.5, 2]\n", "l.yaml")
    cfg = parse_args(["--config", path, "--output_dir", str(tmp_path / "o")], Layered)
    assert (cfg.layers, cfg.scales) == ([-1, -2], [-0.5, 2.0]) and isinstance(cfg.layers[0], int)
    path = yaml_file(tmp_path, "layers: [-x, 2]\n", "bad.yaml")
    with pytest.raises(UserError, match=r"sets layers to \['-x', '2'\], but --layers takes a list of int values"):
        parse_args(["--config", path, "--output_dir", str(tmp_path / "o")], Layered)


def test_a_variants_own_number_may_be_negative_unless_its_positive_lists_it(tmp_path):
    """Every number field was refused below 0, a variant's own too: a default of -0.5 (a logit shift) or -1 (the
    last layer) failed every run with 'must be a number >= 0', naming an option the user never gave (helper var
    F1). The loop's own options keep their ranges; a variant's field lists itself in POSITIVE for >= 1 (> 0)."""
    from dataclasses import dataclass, field

    from loop.config import TrainConfig

    @dataclass
    class Signed(TrainConfig):
        logit_shift: float = field(default=-0.5, metadata={"help": "shift"})
        pool_layer: int = field(default=-1, metadata={"help": "layer"})
        heads: int = field(default=2, metadata={"help": "heads"})
        POSITIVE = TrainConfig.POSITIVE + ("heads",)

    out = ["--output_dir", str(tmp_path / "o")]
    cfg = parse_args(out + ["--pool_layer", "-2"], Signed)
    assert (cfg.logit_shift, cfg.pool_layer) == (-0.5, -2)
    with pytest.raises(UserError, match=r"^--heads must be a positive integer, got 0\.$"):
        parse_args(out + ["--heads", "0"], Signed)
    with pytest.raises(UserError, match=r"^--weight_decay must be a number >= 0, got -0\.1\.$"):
        parse_args(out + ["--weight_decay=-0.1"], Signed)


def test_a_dataset_name_that_a_local_file_replaces_is_warned_about(tmp_path):
    """`--dataset_name X` beside a --config's --train_file trained on the file, silently. Warned now when the name
    is given with or after the file; configs/imdb.yaml's dataset_name then a --train_file flag (README) is not."""
    train, val = tmp_path / "t.jsonl", tmp_path / "v.jsonl"
    for f in (train, val):
        f.write_text('{"text": "a", "label": 0}\n')
    files = yaml_file(tmp_path, f"train_file: {train}\nvalidation_file: {val}\n", "files.yaml")
    hub = yaml_file(tmp_path, "dataset_name: org/hub\n", "hub.yaml")
    out = ["--output_dir", str(tmp_path / "o")]

    def said(argv):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = parse_args(argv + out)
        return cfg, [str(w.message) for w in caught if "--dataset_name" in str(w.message)]

    cfg, lines = said(["--config", files, "--dataset_name", "org/x"])
    assert cfg.train_file == str(train)
    assert lines == [f"--dataset_name org/x (on the command line) is ignored: --train_file {train} (in --config "
                     f"{files}) replaces the Hub dataset; to read the Hub dataset, clear the files with --train_file "
                     f"'' --validation_file ''."]
    assert said(["--config", files, "--config", hub])[1]  # a later file's name, an earlier file's train_file
    assert said(["--dataset_name", "org/x", "--train_file", str(train)])[1]
    assert not said(["--config", "configs/imdb.yaml", "--train_file", str(train)])[1]  # the README's offline recipe
    assert not said(["--config", hub, "--config", files])[1]  # a later file's files replace the earlier name
    cfg, lines = said(["--config", files, "--dataset_name", "org/x", "--train_file", "", "--validation_file", ""])
    assert not lines and cfg.dataset_name == "org/x" and not cfg.train_file  # the fix the warning names


def test_control_characters_in_paths_are_refused(tmp_path, capsys):
    """`output_dir: "runs\\new"` (a Windows path in double quotes) made a folder named 'runs', a line feed, 'ew' and
    trained into it. Refused: from a --config with the YAML escape named, from a flag plainly."""
    path = yaml_file(tmp_path, 'output_dir: "runs\\new"\n')
    with pytest.raises(UserError, match=r"sets output_dir to 'runs\\new', which holds a control character \(\\n\); a "
                                        r"backslash inside double quotes is a YAML escape: use / or single quotes\."):
        parse_args(["--config", path])
    with pytest.raises(UserError, match="control character"):
        yaml_to_argv(yaml_file(tmp_path, 'extra_eval_files: {a: "d\\tx.jsonl"}\n', "e.yaml"))
    line = user_error(capsys, ["--output_dir", "a\nb"], "--output_dir", "control character", "without it")
    assert "YAML" not in line
    user_error(capsys, ["--output_dir", str(tmp_path / "o"), "--train_file", "x\r.jsonl"], "--train_file",
               "control character")
    assert parse_args(["--config", yaml_file(tmp_path, "output_dir: 'runs\\new'\n", "s.yaml")]).output_dir \
        == "runs\\new"  # single quotes: no escapes


def test_a_config_that_is_a_pipe_or_a_device_is_named_so(tmp_path):
    """`--config <(echo 'seed: 3')` (a pipe) or /dev/null said 'does not exist'; each is named now, with the fix."""
    pipe = tmp_path / "p"
    os.mkfifo(pipe)
    with pytest.raises(UserError, match=f"--config {pipe} is a pipe, not a regular file; write the YAML to a file"):
        parse_args(["--config", str(pipe)])
    with pytest.raises(UserError, match="--config /dev/null is a device or socket, not a regular file"):
        parse_args(["--config", "/dev/null"])
    with pytest.raises(UserError, match="does not exist"):
        parse_args(["--config", str(tmp_path / "none.yaml")])


def test_a_json_config_indented_with_tabs_is_read_and_a_yaml_tab_is_named(tmp_path):
    """A JSON config indented with tabs was PyYAML's bare "found character '\\t' that cannot start any token": JSON
    allows them, so it is read as JSON reads it; a YAML file's tab is refused with the fix."""
    path = yaml_file(tmp_path, '{\n\t"seed": 3,\n\t"run_name": "a b",\n\t"label_names": ["x", "y"]\n}\n', "c.json")
    cfg = parse_args(["--config", path, "--output_dir", str(tmp_path / "o")])
    assert (cfg.seed, cfg.run_name, cfg.label_names) == (3, "a b", "x,y")
    path = yaml_file(tmp_path, "seed: 3\n\trun_name: x\n")
    with pytest.raises(UserError, match=r"is not valid YAML at line 2 \(.*\); YAML allows no tab there: use spaces\."):
        parse_args(["--config", path])


def test_an_argparse_refusal_of_a_config_value_names_the_file(tmp_path, capsys):
    """`seed: 7# x` (a comment needs a space before #) or `warmup_ratio: 10%` was refused by argparse naming --seed
    but not the file it came from (the file's value is parsed first: refused even beside a good --seed flag)."""
    path = yaml_file(tmp_path, "seed: 7# x\nwarmup_ratio: 10%\n")
    line = user_error(capsys, ["--config", path], "--seed", "'7# x'")
    assert line == f"error: argument --seed: invalid int value: '7# x' (from --config {path}); see --help.", line
    user_error(capsys, ["--config", path, "--seed", "4"], f"'7# x' (from --config {path})")
    user_error(capsys, ["--config", yaml_file(tmp_path, "warmup_ratio: 10%\n", "w.yaml")], "'10%' (from --config")
    user_error(capsys, ["--config", path, "--seed", "x"], "'7# x' (from --config")  # the file's, refused first
    line = user_error(capsys, ["--seed", "x"], "invalid int value: 'x'")
    assert "--config" not in line
    line = user_error(capsys, ["--config", yaml_file(tmp_path, "seed: 3\n", "s.yaml"), "--seed"],
                      "expected one argument")  # the flag's missing value, not the file's (review r2 R2-3)
    assert "--config" not in line, line


def test_a_run_record_given_as_a_config_is_named_so(tmp_path):
    """`--config out/best/training_args.json` (JSON is YAML) got nearest-spelling hints for data_files, versions;
    now it is named a run record, its options under `options`."""
    path = yaml_file(tmp_path, '{"options": {"seed": 3}, "versions": {"python": "3"}, "data_files": {}}\n',
                     "training_args.json")
    with pytest.raises(UserError, match=f"--config {path} is a run record \\(training_args.json\\), whose options are "
                                        f"under `options`; write the ones to reuse to a YAML file"):
        parse_args(["--config", path])


def test_config_without_a_file_is_one_line(capsys):
    """`--config` as the last word (the file forgotten) printed argparse's usage of --config alone."""
    with pytest.raises(UserError, match=r"^argument --config: expected one argument: name a YAML or JSON file "
                                        r"\(--config configs/smoke.yaml\); see --help\.$"):
        parse_args(["--output_dir", "out", "--config"])
    assert "usage:" not in capsys.readouterr().err


def test_trainers_resume_from_checkpoint_true_names_latest(tmp_path, monkeypatch):
    """Trainer's train(resume_from_checkpoint=True) resumes the newest checkpoint: `--resume_from_checkpoint true`
    (or YAML `true`) said the folder 'true' does not exist, and the YAML one asked to quote it, which led there;
    False, no resume, likewise."""
    from loop.checkpoint_folders import resolve_resume

    monkeypatch.chdir(tmp_path)
    for arg in ("true", "True"):
        with pytest.raises(UserError, match=rf"^--resume_from_checkpoint '{arg}' is not a checkpoint folder; for the "
                                            r"newest checkpoint in --output_dir pass 'latest' \(Trainer's "
                                            r"resume_from_checkpoint=True\), or 'auto' to start afresh"):
            resolve_resume(arg, str(tmp_path / "out"))
    with pytest.raises(UserError, match="'nope' does not exist; pass a checkpoint folder or 'latest'"):
        resolve_resume("nope", str(tmp_path / "out"))
    step = tmp_path / "out" / "checkpoints" / "step_40"  # a step's number, not its folder
    step.mkdir(parents=True)
    with pytest.raises(UserError, match=rf"^--resume_from_checkpoint '40' is not a folder; pass the checkpoint of step "
                                        rf"40 as its folder, '{step}' \(or 'latest' for the newest\)\.$"):
        resolve_resume("40", str(tmp_path / "out"))
    with pytest.raises(UserError, match=r"^--resume_from_checkpoint 'false' is not a checkpoint folder; leave "
                                        r"--resume_from_checkpoint out to start without resuming\.$"):
        resolve_resume("false", str(tmp_path / "out"))
    config = tmp_path / "c.yaml"
    config.write_text("resume_from_checkpoint: true\n")
    with pytest.raises(UserError, match=r"sets resume_from_checkpoint to true; for the newest checkpoint in "
                                        r"--output_dir write 'latest'"):
        parse_args(["--config", str(config)])
    config.write_text("resume_from_checkpoint: False\n")  # (told to quote it, which led to "'False' does not exist")
    with pytest.raises(UserError, match=r"sets resume_from_checkpoint to False; leave resume_from_checkpoint out \(or "
                                        r"null\) to start without resuming\.$"):
        parse_args(["--config", str(config)])


def test_an_option_cut_short_names_the_options_it_begins():
    """`--warm` and `--len` matched no whole word of an option's name and no spelling difflib finds: no hint at all."""
    from loop.config import TrainConfig
    from loop.option_hints import option_hint

    assert option_hint("--warm", TrainConfig) == "options with 'warm' in their name: --warmup_ratio, --warmup_steps"
    assert option_hint("--len", TrainConfig) == "options with 'len' in their name: --max_length, --group_by_length"
    assert option_hint("epoch", TrainConfig, yaml=True) == "the nearest option is num_train_epochs"
    assert option_hint("--xyz", TrainConfig) == ""
