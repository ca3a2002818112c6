"""Config checks that a mutation run of loop/config.py (audit64 m4) found unguarded: each test pins one rule a user
relies on (a wrong combination refused, a value normalised, a default that follows another option), in-process and
quick: no data is read and no model built."""

import warnings

import pytest

from loop.config import TrainConfig, parse_args
from loop.config_files import yaml_to_argv
from loop.errors import UserError


def refused(match, **kw):
    with pytest.raises(UserError, match=match):
        TrainConfig(**kw)


# ---------------------------------------------------------------- ranges at their edges
def test_seeds_at_numpys_limit_are_refused_and_just_below_it_accepted():
    refused(r"--seed must be below 2\*\*32", seed=2**32)
    refused(r"--data_seed must be below 2\*\*32", data_seed=2**32)
    assert TrainConfig(seed=2**32 - 1, data_seed=2**32 - 1).data_seed_or_seed == 2**32 - 1


def test_fractions_that_must_stay_below_one_refuse_one():
    """warmup_ratio, betas, label smoothing and LoRA dropout of exactly 1 would warm up for ever, never decay the
    moments, leave no target mass or drop every input: refused at 1, accepted just below."""
    for name in ("warmup_ratio", "adam_beta1", "adam_beta2", "label_smoothing_factor"):
        refused(f"--{name} must be in \\[0, 1\\)", **{name: 1.0})
        TrainConfig(**{name: 0.99})
    refused("--lora_dropout must be at least 0 and below 1", lora_r=4, lora_dropout=1.0)


def test_validation_split_percentage_of_0_or_100_is_refused():
    for p in (0.0, 100.0):
        refused("--validation_split_percentage must be between 0 and 100", validation_split_percentage=p)
    assert TrainConfig(validation_split_percentage=99.5).validation_split_percentage == 99.5


def test_integers_too_large_and_positive_options_at_zero_are_refused():
    refused(r"--max_steps is too large", max_steps=2**62 + 1)
    refused("--per_device_train_batch_size must be a positive integer, got 0", per_device_train_batch_size=0)
    refused("--learning_rate must be positive, got 0", learning_rate=0.0)
    refused("--num_train_epochs must be a finite number", num_train_epochs=float("inf"))


# ---------------------------------------------------------------- values given one spelling
def test_warmup_steps_of_zero_is_no_warmup_and_whole_numbers_are_integers():
    assert TrainConfig(warmup_steps=0.0).warmup_steps is None
    whole = TrainConfig(warmup_steps=10.0).warmup_steps
    assert whole == 10 and isinstance(whole, int)
    refused("--warmup_steps must be a whole number of steps", warmup_steps=2.5)


def test_num_warmup_steps_rounds_a_fraction_up_and_a_ratio_down_at_nine_decimals():
    assert TrainConfig(warmup_steps=0.25).num_warmup_steps(10) == 3  # 2.5 rounded up, as Trainer
    assert TrainConfig(warmup_ratio=0.29).num_warmup_steps(100) == 29  # 28.999999999999996 is 29


def test_truncation_side_in_any_case_is_lower_case():
    assert TrainConfig(truncation_side="LEFT").truncation_side == "left"


def test_label_column_list_with_spaces_is_one_spelling_and_repeats_are_refused():
    assert TrainConfig(label_column="toxic, obscene").label_column == "toxic,obscene"
    refused("several distinct, non-empty", label_column="toxic,obscene,toxic")


def test_sdpa_backends_repeated_is_one_spelling():
    assert TrainConfig(sdpa_backends="flash,Flash,math").sdpa_backends == "flash,math"
    refused("--sdpa_backends ',' is unknown", sdpa_backends=",")


def test_an_empty_optional_text_from_python_is_not_given_and_a_required_number_is_refused():
    assert TrainConfig(validation_split_percentage="").validation_split_percentage is None
    assert TrainConfig(run_name="", eval_split=" ").run_name is None  # a blank optional text is not given either
    refused("--learning_rate must be a number, got ''", learning_rate="")


# ---------------------------------------------------------------- options that go together, or not
def test_a_compile_mode_turns_compilation_on_and_cuda_graphs_refuse_batch_search():
    assert TrainConfig(torch_compile_mode="default").torch_compile is True
    refused("--auto_find_batch_size raises --gradient_accumulation_steps", torch_compile_mode="max-autotune",
            auto_find_batch_size=True)
    refused("cannot accumulate gradients over 2", torch_compile_mode="reduce-overhead", gradient_accumulation_steps=2)


def test_an_early_stopping_threshold_needs_a_patience():
    refused("add --early_stopping_patience N", early_stopping_threshold=0.01)
    TrainConfig(early_stopping_threshold=0.01, early_stopping_patience=2)


def test_config_overrides_of_the_labels_are_refused_and_a_key_without_value_too():
    refused("--config_overrides num_labels: the labels", config_overrides="num_labels=3")
    refused("--config_overrides is malformed at 'dim='", config_overrides="n_layers=2,dim=")


def test_a_warmup_given_twice_or_with_a_constant_schedule_is_refused():
    refused("both set the warmup", warmup_steps=5, warmup_ratio=0.1)
    refused("--lr_scheduler_type constant has no warmup, so --warmup_ratio", lr_scheduler_type="constant",
            warmup_ratio=0.1)


def test_a_hub_split_or_configuration_beside_local_files_is_refused_naming_the_flag(tmp_path):
    train = tmp_path / "t.csv"
    train.write_text("text,label\na,0\n")
    refused("--train_split picks a split of --dataset_name, but --train_file", train_file=str(train),
            train_split="training")
    refused("--test_split and --eval_split are both 'x'", eval_split="x", test_split="x")
    refused("--test_split and --train_split are both 'train'", test_split="train")


def test_max_test_samples_and_a_hub_id_that_do_nothing_are_warned_about():
    for kw, words in (({"max_test_samples": 5}, "there is no test data"),
                      ({"hub_model_id": "me/m"}, "nothing will be pushed"),
                      ({"save_total_limit": 2}, "without --checkpointing_steps")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            TrainConfig(**kw)
        assert any(words in str(w.message) for w in caught), (kw, [str(w.message) for w in caught])
    with warnings.catch_warnings(record=True) as caught:  # with checkpoints the limit does its job: no warning
        warnings.simplefilter("always")
        TrainConfig(save_total_limit=2, checkpointing_steps="5")
    assert not [w for w in caught if "save_total_limit" in str(w.message)]


def test_eval_only_drops_training_only_options_and_keeps_a_frozen_dtype():
    cfg = TrainConfig(eval_only=True, model_name_or_path="out/best", weight_column="w", torch_dtype="bf16")
    assert cfg.weight_column is None and cfg.torch_dtype == "bfloat16"
    refused("--eval_only scores a trained classifier", eval_only=True)


# ---------------------------------------------------------------- the metric
def test_a_regressions_default_metric_is_mse_and_accuracy_asked_for_is_refused():
    cfg = TrainConfig(problem_type="regression")
    assert cfg.metric == "mse" and cfg.metric_defaulted
    asked = parse_args(["--metric", "accuracy", "--eval_only", "--model_name_or_path", "m"])
    with pytest.raises(UserError, match="--metric accuracy: model 'm' is a regression model"):
        asked.score_as_regression()


def test_multi_label_data_picks_by_f1_unless_a_resumed_checkpoint_picked_by_accuracy():
    cfg = TrainConfig()
    assert cfg.metric_defaulted and cfg.score_as_multi_label().startswith("metric: f1") and cfg.metric == "f1"
    resumed = TrainConfig()
    assert resumed.score_as_multi_label(resumed=True).startswith("metric: accuracy") and resumed.metric == "accuracy"
    named = TrainConfig()
    named.keep_checkpoint_metric("f1", defaulted=False, multi_label=True)
    assert named.metric == "f1"


def test_loss_is_never_a_computed_metric_and_an_unknown_one_counts_higher_as_better():
    assert TrainConfig(metric="loss", metrics="accuracy").metric_list() == ["accuracy"]
    assert TrainConfig(metric="loss").higher_is_better is False
    assert TrainConfig(metric="someones/metric").higher_is_better is True


def test_the_longest_extra_set_name_wins_and_a_known_metric_reading_is_preferred(tmp_path):
    for name in ("a.csv", "a_b.csv", "eval.csv"):
        (tmp_path / name).write_text("text,label\nx,0\n")
    files = f"a={tmp_path / 'a.csv'},a_b={tmp_path / 'a_b.csv'}"
    assert TrainConfig(extra_eval_files=files, metric="a_b_f1").metric_source() == ("a_b", "f1")
    cfg = TrainConfig(extra_eval_files=f"eval={tmp_path / 'eval.csv'}", metric="eval_eval_accuracy")
    assert cfg.metric_source() == ("eval", "accuracy")


def test_extra_sets_named_alike_in_another_case_or_reading_one_file_twice_are_refused(tmp_path):
    (tmp_path / "x.csv").write_text("text,label\nx,0\n")
    x = tmp_path / "x.csv"
    refused("two evaluation sets are named 'OOD'", extra_eval_files=f"ood={x},OOD={x}")
    refused("are both file", extra_eval_files=f"one={x},two={x}")
    refused("--extra_eval_splits names splits of --dataset_name, but --train_file", train_file=str(x),
            extra_eval_splits="test")
    refused("would log keys beginning eval_f1_", extra_eval_files=f"f1={x}", metrics="f1_macro")


def test_checkpoints_are_due_every_n_steps_or_at_epoch_ends_only():
    assert TrainConfig(checkpointing_steps="epoch").checkpoint_due(3, epoch_end=False) is False
    assert TrainConfig(checkpointing_steps="epoch").checkpoint_due(3, epoch_end=True) is True
    assert TrainConfig(checkpointing_steps="2").checkpoint_due(4, epoch_end=False)


def test_was_given_in_code_is_a_value_other_than_the_default():
    cfg = TrainConfig(seed=7)
    assert cfg.was_given("seed") and not cfg.was_given("learning_rate")


# ---------------------------------------------------------------- class weights
def test_class_weights_negative_out_of_range_mixed_or_named_twice_are_refused():
    refused("'-1' is not a weight", class_weights="1,-1")
    refused("1e\\+07 is out of range", class_weights="1,1e7")
    refused("mixes label=weight pairs and bare weights", class_weights="NEG=1,4")
    refused("names a label twice", class_weights="NEG=1,NEG=4")
    assert TrainConfig(class_weights="NEG=1, POS=4").class_weights == "NEG=1.0,POS=4.0"


def test_label_names_for_a_classifier_need_two_and_a_regression_one():
    refused("must be at least two distinct", label_names="ONLY")
    refused("a regression predicts one number", label_names="a,b", problem_type="regression")
    assert TrainConfig(label_names="score", problem_type="regression").label_list() == ["score"]


# ---------------------------------------------------------------- YAML and the command line
def test_the_command_line_wins_over_the_file_and_a_later_file_over_an_earlier(tmp_path):
    base, exp = tmp_path / "base.yaml", tmp_path / "exp.yaml"
    base.write_text("learning_rate: 1.0e-3\nseed: 1\n")
    exp.write_text("seed: 2\n")
    cfg = parse_args(["--config", str(base), "--config", str(exp), "--learning_rate", "0.5",
                      "--output_dir", str(tmp_path / "o")])
    assert (cfg.learning_rate, cfg.seed) == (0.5, 2)


def test_yaml_numbers_for_text_and_number_options_are_read_as_written(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_name: 010\nseed: 0042\nlabel_names: [1, 02]\n")
    argv = yaml_to_argv([str(path)])
    assert argv == ["--run_name", "010", "--seed", "0042", "--label_names", "1,02"]


def test_a_yaml_null_unsets_a_text_option_a_flag_of_the_file_below_gave(tmp_path):
    base, exp = tmp_path / "base.yaml", tmp_path / "exp.yaml"
    base.write_text("run_name: first\n")
    exp.write_text("run_name: ~\n")
    assert yaml_to_argv([str(base), str(exp)]) == ["--run_name", ""]
    cfg = parse_args(["--config", str(base), "--config", str(exp), "--output_dir", str(tmp_path / "o")])
    assert cfg.run_name is None


def test_a_yaml_mapping_of_class_weights_is_name_weight_pairs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("class_weights: {NEG: 1, POS: 4}\n")
    assert yaml_to_argv([str(path)]) == ["--class_weights", "NEG=1,POS=4"]


def test_a_file_whose_name_holds_an_equals_sign_is_the_file_not_a_name(tmp_path):
    """'/d/k=v.csv' is that file (its stem cannot name a set: said so), not a set '/d/k' of a file 'v.csv'."""
    odd = tmp_path / "k=v.csv"
    odd.write_text("text,label\nx,0\n")
    refused("--extra_eval_files: 'k=v' cannot name an evaluation set", extra_eval_files=str(odd))
    assert TrainConfig(extra_eval_files=f"odd={odd}").extra_evals() == [("odd", "file", str(odd))]


# ---------------------------------------------------------------- more combinations (second batch)
def test_an_unknown_problem_type_is_refused_naming_the_three():
    refused("--problem_type 'multilabel' is unknown; choose one of single_label_classification, "
            "multi_label_classification, regression", problem_type="multilabel")


def test_local_test_and_validation_files_need_their_training_or_evaluation_file(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("text,label\na,0\n")
    refused("--test_file needs --train_file too", test_file=str(f))
    refused("--test_file needs --validation_file \\(or --train_file\\) too", test_file=str(f), eval_only=True,
            model_name_or_path="out/best")
    TrainConfig(test_file=str(f), validation_file=str(f), eval_only=True, model_name_or_path="out/best")


def test_columns_named_twice_or_labels_as_text_are_refused():
    refused("--text_column 'toxic' is also one of the columns of --label_column", text_column="toxic",
            label_column="toxic,insult")
    refused("--weight_column 'insult' is also one of the columns of --label_column", weight_column="insult",
            label_column="toxic,insult")
    refused("--text_column is 'labels', the column the loop writes the label ids into", text_column="labels")


def test_report_to_none_beside_a_tracker_and_an_output_dir_that_is_a_file_are_refused(tmp_path):
    refused("'none' stands alone", report_to="tensorboard,none")
    f = tmp_path / "f"
    f.write_text("")
    refused("is a file, not a folder", output_dir=str(f))


def test_a_prefix_of_a_flag_is_not_the_flag(tmp_path):
    with pytest.raises(UserError, match="unrecognized argument '--max_step'"):
        parse_args(["--max_step", "7", "--output_dir", str(tmp_path / "o")])


def test_a_data_folder_and_a_pattern_of_two_formats_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\na,0\n")
    (tmp_path / "b.jsonl").write_text('{"text": "a", "label": 0}\n')
    refused("is a folder; pass one file", train_file=str(tmp_path))
    refused("matches files of 2 formats", train_file=str(tmp_path / "*"))


def test_an_unknown_yaml_key_and_a_key_given_twice_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rat: 1.0e-3\n")
    with pytest.raises(UserError, match="has unknown keys: learning_rat; the nearest option is learning_rate"):
        yaml_to_argv([str(path)])
    path.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(UserError, match="sets seed twice"):
        yaml_to_argv([str(path)])


def test_a_tilde_path_is_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert TrainConfig(output_dir="~/runs/x").output_dir == str(tmp_path / "runs" / "x")


def test_a_yaml_list_entry_with_a_comma_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("label_names: ['a,b', c]\n")
    with pytest.raises(UserError, match="lists 'a,b' under label_names, but --label_names is split at commas"):
        yaml_to_argv([str(path)])


def test_greater_is_better_against_a_known_direction_and_a_regression_metric_for_classes_are_refused():
    with pytest.raises(UserError, match="--greater_is_better true says a higher loss is better"):
        TrainConfig(metric="loss", greater_is_better=True).check_metrics((), (), "Loop")
    with pytest.raises(UserError, match="--metric mse scores a regression"):
        TrainConfig(metric="mse").check_metrics((), (), "Loop")


def test_a_shipped_metric_in_another_case_or_with_the_eval_prefix_is_refused_naming_it():
    refused("--metric 'F1' is not a metric name; did you mean 'f1'", metric="F1")
    refused("--metrics 'eval_accuracy' is not a metric name; did you mean 'accuracy'", metrics="eval_accuracy")
