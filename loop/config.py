"""Configuration: one dataclass, filled from a YAML file and the command line.

Argument names follow transformers' `run_glue_no_trainer.py`. Mixed precision, the number
of processes and the distribution strategy are NOT here: they come from `accelerate config`
or `accelerate launch` flags, so there is one place to set them.

Precedence: dataclass defaults < `--config FILE` (YAML) < command-line flags.

A `--config` file is read into flags by `config_files.py`; what to write for an unknown option is
`option_hints.py`'s.
"""

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import typing
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Optional

from transformers import HfArgumentParser

from .errors import UserError, is_main_rank
from .hub import check_link, check_readable, dangling, unreachable
from .option_hints import expanded_pattern_hint, option_hint
from .schedules import SCHEDULERS, kwargs_text
from .version import version_line

# --torch_dtype: the dtypes weights may be kept in, and accelerate's names for them (accepted too)
TORCH_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "fp32": "float32",
                "bf16": "bfloat16", "fp16": "float16"}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the ones that capture CUDA graphs
EXTRA_EVAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # an extra evaluation set's name, in its metric keys
# Direction of the metrics people pick best/ by; others count as higher-is-better unless --greater_is_better false.
KNOWN_DIRECTION = {"accuracy": True, "f1": True, "precision": True, "recall": True, "matthews_correlation": True,
                   **{f"{m}_{a}": True for m in ("f1", "precision", "recall") for a in ("macro", "weighted", "micro")},
                   "roc_auc": True, "loss": False,
                   # regression (scores.regression): errors fall, correlations and r2 rise
                   "mse": False, "rmse": False, "mae": False, "r2": True, "pearson": True, "spearman": True}
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")  # transformers' names
FILE_EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}

SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")  # --sdpa_backends' names (models.set_sdpa_backends)


def parse_sdpa_backends(value):
    """--sdpa_backends as given, checked: auto, torch, or a comma list of SDPA_BACKENDS (lower case, no spaces)."""
    text = str(value).strip().lower()
    if text in ("auto", "torch"):
        return text
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SDPA_BACKENDS]
    if not names or unknown:
        raise UserError(f"--sdpa_backends '{value}' is unknown; give auto, torch, or a comma list of "
                        f"{', '.join(SDPA_BACKENDS)} (e.g. flash,efficient).")
    return ",".join(dict.fromkeys(names))


def steps_share(fraction, total):
    """A fraction of `total` steps, rounded up (as Trainer rounds --warmup_steps, --eval_steps, ... below 1) after
    rounding to 9 decimals: 0.29 x 100 is 28.999999999999996 in floating point, 29 steps here, not 28."""
    return math.ceil(round(fraction * total, 9))


def _steps_number(text):
    """--checkpointing_steps' text other than digits as a number ('1e-1', '10.0', '0'), read as --eval_steps reads
    its value (steps_option checks it); None for what is not a plain number ('ten', ' 5', '1_0', 'nan')."""
    try:
        plain = text.isascii() and "_" not in text and text == text.strip()  # (float() takes '1_0' and ' 5')
        value = float(text) if plain else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def steps_option(name, value, zero=False, also=""):
    """A number-of-steps option's value checked (--warmup_steps, --logging_steps, --eval_steps,
    --checkpointing_steps): a whole number of steps, returned as an int (10.0 and 10 are one setting: a resume
    compares them), or a fraction of the run's steps (above 0, below 1), returned as it is. `zero`: 0 is allowed
    (no warmup); `also`: the other values the option takes, for the message (", or 'epoch'")."""
    if 0 < value < 1:
        return value
    if value == int(value) and (value >= 1 or (zero and value == 0)):
        if value > 2**62:  # (the bound _check_fields sets the loop's integer options)
            raise UserError(f"--{name} is too large ({value:g}).")
        return int(value)
    raise UserError(f"--{name} must be a whole number of steps ({0 if zero else 1} or more), or a fraction of the "
                    f"run's steps between 0 and 1 (0.25){also}, got {value:g}.")


def _help(text, **kw):
    return field(metadata={"help": text}, **kw)


def _option_type(kind):
    """(base type, optional) of an option's annotation: Optional[str] → (str, True), int → (int, False)."""
    args = typing.get_args(kind)
    optional = type(None) in args
    return (next((a for a in args if a is not type(None)), kind) if optional else kind), optional


def comma_in_path(flag, name, source, rest):
    """A comma-list option's file `source` not found: when it and the pieces after it (`rest`) joined back by their
    commas name a file, the path held a comma; say that rather than 'source' missing or its extension wrong."""
    for n in range(1, len(rest) + 1):
        path = os.path.expanduser(",".join([source] + rest[:n]).strip())
        if os.path.exists(path):
            raise UserError(f"{flag}: '{path}' has a comma in its path, and the option is split at commas, so it "
                            f"would become {n + 1} entries; rename it or link to it under a name without commas, or "
                            f"give a named pattern with '?' for each comma: '{name or 'NAME'}={path.replace(',', '?')}'.")


def read_only_mount(folder):
    """Whether `folder` lies on a filesystem mounted read-only (statvfs's ST_RDONLY), where no permission helps."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs: not a POSIX system)
        return False


def not_utf8(text):
    """Where `text` (a name or a text from the command line) is not UTF-8, as a phrase ("a byte 0xe9 in
    'caf\ufffd good'": a byte that is not UTF-8 arrives as a lone surrogate), or None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        at = e.start
    around = text[max(0, at - 20):at + 20]
    try:
        what = f"a byte 0x{text[at].encode('utf-8', 'surrogateescape').hex()}"
        shown = around.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no byte gives (half of a character, through the Python API)
        what = f"a lone surrogate U+{ord(text[at]):04X}"
        shown = around.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{what} in '{shown}'"


def check_utf8_path(option, value):
    """A path whose name holds a byte that is not UTF-8 (a Latin-1 name from an old system: Python reads it as a lone
    surrogate) trained to the end and then failed: tokenizers cannot save into such a folder, and the model card
    cannot name such a file (UnicodeEncodeError, best/ lost). Refused in one line at the start."""
    bad = not_utf8(value) if isinstance(value, str) else None
    if bad:
        raise UserError(f"--{option} is not UTF-8 ({bad}); rename it in UTF-8 (e.g. convmv -f latin1 -t utf8), or "
                        f"give a link to it under a UTF-8 name.")


def control_character(value):
    """The first control character in a text (a line feed, a tab), as Python writes it ('\\n'), or None."""
    return next((repr(c)[1:-1] for c in value if unicodedata.category(c) == "Cc"), None) \
        if isinstance(value, str) else None


def _from_text(name, text, base, optional):
    """An option set from Python with a text where it takes a bool or a number (TrainConfig(from_scratch="false"):
    a non-empty text is true, and "1e-3" failed deep in the run with a TypeError), read as its flag's text is;
    '' is "not given" for an optional one."""
    low = text.strip().lower()
    if not low and optional:
        return None
    if base is bool:
        if low in ("true", "yes", "t", "y", "1"):
            return True
        if low in ("false", "no", "f", "n", "0"):
            return False
        raise UserError(f"--{name} must be true or false, got {text!r}.")
    try:
        return base(low)
    except ValueError:
        raise UserError(f"--{name} must be {'an integer' if base is int else 'a number'}, got {text!r}.") from None


@dataclass
class TrainConfig:
    # --- model ---
    model_name_or_path: str = _help("Hub model id or local model folder.", default="distilbert-base-uncased")
    tokenizer_name: Optional[str] = _help("Tokenizer id or folder, if not the model's own.", default=None)
    from_scratch: bool = _help("Random weights from the model's config instead of pretrained weights.", default=False)
    ignore_mismatched_sizes: bool = _help(
        "Start from a checkpoint whose weights do not all fit the model built here, making those fresh: a classifier "
        "trained on another number of labels (an MNLI or 3-class sentiment model for a 2-label task) gets a new head "
        "on its trained body; a --config_overrides that changes a shape gets new weights there (the whole tensor: a "
        "larger vocab_size keeps no trained embedding row). Each is named at start.", default=False)
    config_overrides: Optional[str] = _help(
        "Override model config values, e.g. 'n_layers=2,dim=64,pad_token_id=0,layer_types=[full,sliding],x=null' "
        "(typed like the field; for a field that is None: null, true/false, numbers, [lists], text; a dict field: a "
        "JSON object whose keys it sets; rope_theta=500000 sets rope_parameters' key on transformers 5).", default=None
    )
    attn_implementation: Optional[str] = _help(
        "Attention kernel: sdpa, eager, flash_attention_2, flex_attention (default: SDPA where the model supports it, else eager).",
        default=None)
    sdpa_backends: str = _help(
        "The SDPA attention kernels PyTorch may choose from on an NVIDIA GPU: auto (not cuDNN's, which builds a "
        "kernel graph for every new batch width, and length-grouped batches have dozens; flash, memory-efficient "
        "and math as they are), torch (PyTorch's own choice: cuDNN first on H100/H200), or a comma list of flash, "
        "efficient, cudnn, math (keep math in it: a batch no listed kernel takes stops the run, and flash takes no "
        "padding mask). No effect on a CPU or with --attn_implementation eager.", default="auto")
    gradient_checkpointing: bool = _help("Recompute activations in backward to save memory.", default=False)
    auto_find_batch_size: bool = _help(
        "Before training, try the longest batch of --per_device_train_batch_size rows; if it runs out of memory, "
        "try the largest divisor of it at most half as large (24, 12, 6, 3, 1), raising --gradient_accumulation_steps "
        "so an optimizer step keeps its examples and the recipe its results. A resumed run keeps the checkpoint's. "
        "Then (also on resume, and with --eval_only) halve --per_device_eval_batch_size until the longest evaluation "
        "batch fits. Not with FSDP or DeepSpeed.", default=False)
    tf32: Optional[bool] = _help(
        "TF32 matrix products and convolutions on Ampere and newer NVIDIA GPUs (A100, H100): several times the "
        "fp32 speed for runs without mixed precision, inputs rounded to a 10-bit mantissa; false: full fp32 "
        "everywhere (default: PyTorch's, fp32 matmuls and TF32 convolutions).", default=None)
    ddp_find_unused_parameters: Optional[bool] = _help(
        "DDP: look for parameters without a gradient at every step (needed when some get none: a head the "
        "model does not use, experts a batch does not route to). Default: on when a trial forward pass finds "
        "such parameters or the model has experts.", default=None)
    ddp_timeout: int = _help(
        "Seconds a process waits for the others in a collective before the run is aborted (NCCL's own limit is "
        "600: the main process alone verifying or writing a large checkpoint, or tokenizing, can take longer).",
        default=1800)
    torch_compile: bool = _help("Compile the model with torch.compile (inputs padded to buckets to limit recompiles).", default=False)
    torch_compile_mode: Optional[str] = _help(
        "torch.compile mode (turns --torch_compile on): default, reduce-overhead (CUDA graphs: less launch overhead "
        "per step, for small batches on a GPU; more memory), max-autotune (longer compile, faster kernels; CUDA "
        "graphs too), max-autotune-no-cudagraphs. The CUDA-graph modes cannot accumulate gradients "
        "(--gradient_accumulation_steps 1).", default=None)
    trust_remote_code: bool = _help(
        "Allow models whose architecture code lives in their Hub repository, and --metric/--metrics modules that are "
        "not evaluate's own (a local metric script, a user/name module on the Hub); this RUNS that Python code on "
        "this machine, so use it only for code you trust.", default=False)
    lora_r: Optional[int] = _help("Train LoRA adapters of this rank instead of all weights (needs pip install -e \".[peft]\"); "
                                  "the classification head is trained in full.", default=None)
    lora_alpha: Optional[int] = _help("LoRA scaling alpha (default: 2 * --lora_r).", default=None)
    lora_dropout: float = _help("Dropout on the LoRA branch.", default=0.05)
    lora_target_modules: Optional[str] = _help(
        "Comma-separated module names to adapt, e.g. 'q_proj,v_proj' (default: every linear layer of the model body).",
        default=None)
    torch_dtype: str = _help(
        "The dtype of the weights nothing trains: float32, bfloat16 or float16. With --lora_r the frozen model body "
        "is loaded and kept in it (bfloat16: half the memory of float32; the adapters and the head train in float32; "
        "needs accelerate's matching --mixed_precision); with --eval_only the whole model is scored in it (left out "
        "for a best/ whose run kept its body in bfloat16: that run's, as pipeline() loads it). Full "
        "fine-tuning trains float32 master weights (accelerate launch --mixed_precision bf16 computes in bf16).",
        default="float32")

    # --- data ---
    dataset_name: Optional[str] = _help("Hub dataset name; ignored when --train_file is given.", default="imdb")
    dataset_config_name: Optional[str] = _help("Hub dataset configuration name.", default=None)
    train_split: str = _help("The Hub dataset's split to train on.", default="train")
    eval_split: Optional[str] = _help("The Hub dataset's split to evaluate on, e.g. validation_matched (MNLI) "
                                      "(default: validation, else dev, else test).", default=None)
    test_split: Optional[str] = _help(
        "A Hub dataset's split held out for the final report, e.g. test: never evaluated to pick best/, scored "
        "once each time best/ changes (test_* metrics). The evaluation split is then --eval_split, else "
        "validation, else one carved with --validation_split_percentage.", default=None)
    train_file: Optional[str] = _help(
        "Local training file: csv, tsv, json/jsonl or parquet; or a quoted glob pattern of its shards, read in name "
        "order as one ('data/train-*.parquet').", default=None)
    validation_file: Optional[str] = _help("Local evaluation file (same formats as --train_file).", default=None)
    test_file: Optional[str] = _help(
        "Local test file (same formats), held out like --test_split: best/ is picked on the evaluation data and "
        "this file scores it (test_* in best_metrics.json and metrics.jsonl).", default=None)
    extra_eval_files: Optional[str] = _help(
        "More evaluation sets, each scored at every evaluation beside the evaluation data (an out-of-domain set, a "
        "harder one): comma list of NAME=FILE, or FILE alone (named by its stem); the formats and patterns of "
        "--train_file. Each logs eval_NAME_<metric>, eval_NAME_loss and eval_NAME_samples; best/ and early stopping "
        "follow --metric on the evaluation split, or on a set named by it (--metric NAME_accuracy). Works beside a "
        "Hub dataset too.", default=None)
    extra_eval_splits: Optional[str] = _help(
        "More evaluation sets from the Hub dataset's splits, e.g. validation_mismatched (MNLI, beside --eval_split "
        "validation_matched): comma list of SPLIT (named by itself) or NAME=SPLIT; scored as --extra_eval_files.",
        default=None)
    validation_split_percentage: Optional[float] = _help(
        "Carve a seeded, stratified evaluation split of this percentage from train when there is none.", default=None
    )
    text_column: str = _help("Column with the text.", default="text")
    text_pair_column: Optional[str] = _help("Column with the second text, for sentence-pair tasks.", default=None)
    label_column: str = _help("Column with the label (ids or strings; a list of them per text for multi-label; a "
                              "number for --problem_type regression). Multi-label data with a 0/1 (or true/false) "
                              "column per label: a comma list of those columns, e.g. toxic,obscene,insult (the labels "
                              "are named by the columns, in that order).", default="label")
    weight_column: Optional[str] = _help(
        "Column of the training data with a weight per example (a number >= 0): each example's training loss "
        "counts that much, a weighted mean over each optimizer step's examples (times --class_weights if given); "
        "evaluation is unweighted.", default=None)
    label_names: Optional[str] = _help(
        "Comma-separated label names in id order, e.g. 'NEGATIVE,POSITIVE'. String labels must be among them. "
        "Regression: one name for the predicted number (default: --label_column's name).", default=None
    )
    problem_type: Optional[str] = _help(
        "What a label is: single_label_classification (one class per text), multi_label_classification (a list of "
        "classes per text, possibly empty) or regression (a number per text: one output, mean squared error). "
        "Default: multi-label when the label column holds lists, else single-label; regression is never guessed "
        "(integer scores 1-5 may be either).", default=None)
    max_length: Optional[int] = _help("Truncate inputs to this many tokens (default: the model's limit, at most 512).", default=None)
    truncation_side: Optional[str] = _help(
        "Which end of a text longer than --max_length is cut: right (the model sees the start) or left (it sees the "
        "end: where reviews tend to give their verdict). Saved with best/'s tokenizer, so pipeline() cuts the same "
        "way. Default: the tokenizer's own (right for almost all; a model trained with left keeps it).", default=None)
    max_train_samples: Optional[int] = _help("Use a seeded random subset of N training examples (same on every rank and on resume; "
                                               "taken after --validation_split_percentage carves its split).", default=None)
    max_eval_samples: Optional[int] = _help("Use a seeded random subset of N evaluation examples.", default=None)
    max_test_samples: Optional[int] = _help("Use a seeded random subset of N test examples (--test_file, --test_split).",
                                            default=None)
    group_by_length: bool = _help("Batch examples of similar length together (shuffled, seeded): less padding.", default=True)
    preprocessing_num_workers: Optional[int] = _help("Processes for tokenization (default: 1, or more for big data).", default=None)
    dataloader_num_workers: Optional[int] = _help("DataLoader worker processes (default: 2 on GPU, 0 on CPU).", default=None)

    # --- optimization ---
    per_device_train_batch_size: int = _help("Training batch size per process.", default=16)
    per_device_eval_batch_size: int = _help("Evaluation batch size per process (eval is sorted by length).", default=64)
    learning_rate: float = _help("Peak learning rate for AdamW.", default=2e-5)
    weight_decay: float = _help("AdamW weight decay (not applied to biases and LayerNorm weights).", default=0.01)
    num_train_epochs: float = _help(
        "Number of passes over the training data; a fraction (1.5) ends partway through the last one, as Trainer's "
        "does (its steps: the steps per epoch times this, rounded up; that step is evaluated).", default=2.0)
    max_steps: Optional[int] = _help(
        "Train for N optimizer steps instead (overrides --num_train_epochs: as many epochs as that takes, the "
        "last one cut short; the schedule spans N steps). The last step is evaluated.", default=None)
    lr_scheduler_type: str = _help(f"Learning-rate schedule: {', '.join(SCHEDULERS)}.", default="linear")
    lr_scheduler_kwargs: Optional[str] = _help(
        "The schedule's own arguments, as JSON ('{\"num_cycles\": 2}') or name=value pairs ('min_lr_rate=0.1'); "
        "cosine_with_min_lr and cosine_warmup_with_min_lr need min_lr or min_lr_rate, warmup_stable_decay "
        "num_decay_steps.", default=None)
    warmup_ratio: float = _help("Fraction of optimizer steps spent warming up the learning rate (rounded down).",
                                default=0.0)
    warmup_steps: Optional[float] = _help(
        "Optimizer steps spent warming up the learning rate (instead of --warmup_ratio); a value below 1 is a "
        "fraction of the run's steps, rounded up as in Trainer.", default=None)
    adam_beta1: float = _help("AdamW's beta1 (decay of the gradient's running mean).", default=0.9)
    adam_beta2: float = _help("AdamW's beta2 (decay of the squared gradient's running mean).", default=0.999)
    adam_epsilon: float = _help("AdamW's epsilon (added to the denominator).", default=1e-8)
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step.", default=1)
    max_grad_norm: float = _help("Clip the gradient norm to this (0 disables).", default=1.0)
    class_weights: Optional[str] = _help(
        "Weigh the training loss per class, for imbalanced data: 'balanced' (every class weighs the same in all: "
        "n / (classes * count)), or one weight per label, '1,4' in label id order or 'NEGATIVE=1,POSITIVE=4' "
        "(labels not named weigh 1), 0 or 1e-6..1e6. Multi-label: each weight is BCE's pos_weight, the weight of a "
        "label's positive examples (balanced: negatives / positives). The evaluation loss stays unweighted.",
        default=None)
    label_smoothing_factor: float = _help(
        "Label smoothing of the training loss (single-label classification): the target puts 1 - eps + eps/K on "
        "the true class and eps/K on each other. The evaluation loss stays plain cross-entropy.", default=0.0)
    seed: int = _help("Random seed: the new head's (and LoRA's) initial weights and dropout (each process draws its "
                      "own masks), and the data's draws unless --data_seed is given.", default=42)
    data_seed: Optional[int] = _help(
        "Random seed of the data's draws alone: the batch order of every epoch, the --max_*_samples subsets and the "
        "--validation_split_percentage carve (default: --seed). With it, --seed varies the initial weights and "
        "dropout while the data stays the same, and --data_seed the data while the weights start the same (Trainer's "
        "data_seed).", default=None)
    full_determinism: bool = _help(
        "Deterministic kernels, so that two runs of the same command give the same weights on a GPU too (on a CPU they "
        "do without it): torch.use_deterministic_algorithms(True), cuDNN deterministic and not benchmarking, "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8 unless set (cuBLAS reads it at its first matrix product: the run sets it "
        "before starting CUDA; in a process that used CUDA before, set it before Python starts) and flash-attention's "
        "deterministic backward (Trainer's full_determinism). Slower; an operation without a deterministic "
        "implementation then fails, naming itself.", default=False)

    # --- evaluation, logging, output ---
    eval_only: bool = _help(
        "Train nothing: score --model_name_or_path (a trained classifier, e.g. a run's output/best) once on the "
        "evaluation split, and on --test_file / --test_split if given, and write output_dir/eval_results.json and "
        "each example's prediction (eval_predictions.jsonl, test_predictions.jsonl). "
        "The data flags are the training run's (--validation_file alone will do: labels are then the model's "
        "own names).", default=False)
    output_dir: str = _help("Where best/, checkpoints/ and metrics.jsonl go.", default="output")
    overwrite_output_dir: bool = _help("Allow starting a new run in an output_dir that holds a finished one.", default=False)
    metric: Optional[str] = _help(
        "What picks best/: an eval metric (accuracy, f1, precision, recall, matthews_correlation work offline; for "
        "regression mse, rmse, mae, r2, pearson, spearman; other names load an evaluate module and run its code, "
        "named at the start: evaluate's own by name, e.g. roc_auc; a local script or a user/name module on the Hub "
        "only with --trust_remote_code) or 'loss' (lowest eval loss: cross-entropy unless Loop.evaluation_loss is "
        "overridden), or a metric a subclass computes and lists in Loop.own_metrics; NAME_<metric> (e.g. "
        "ood_accuracy, or Trainer's eval_ood_accuracy) picks by an extra evaluation set's score instead of the "
        "evaluation split's. Default: accuracy; for multi-label data f1, micro-averaged over every text's label "
        "decisions (accuracy is there the exact match of a whole label set); regression: mse.",
        default=None)
    metrics: Optional[str] = _help("Comma list of metrics to log at every evaluation, e.g. 'accuracy,f1' "
                                   "(default: just --metric); --metric is added if missing. Names beyond the "
                                   "shipped ones run code as --metric's do.", default=None)
    greater_is_better: Optional[bool] = _help("Whether a higher --metric is better (default: known from the "
                                              "name, and higher for a Hub metric we don't know).", default=None)
    eval_steps: Optional[float] = _help(
        "Also evaluate every N optimizer steps (always at the end of each epoch); a value below 1 is that fraction of "
        "the run's steps, rounded up as in Trainer (0.1: every tenth of the run).", default=None)
    eval_on_start: bool = _help(
        "Also evaluate the starting model before the first step (step 0): its scores are the baseline the training "
        "must beat, a candidate for best/ like every evaluation, and a broken metric or evaluation split fails in "
        "minutes instead of after an epoch.", default=False)
    logging_steps: float = _help(
        "Log the training loss every N optimizer steps; a value below 1 is that fraction of the run's steps, rounded "
        "up as in Trainer.", default=50)
    logging_first_step: bool = _help(
        "Also log the training loss of the first optimizer step (as in Trainer): a diverging start shows before the "
        "first --logging_steps.", default=False)
    report_to: str = _help("Accelerate trackers: none, all, or a comma list (tensorboard, wandb, ...).", default="none")
    run_name: Optional[str] = _help(
        "The run's name in the trackers (wandb, mlflow); default: WANDB_NAME, else --output_dir's last part. A "
        "resumed run continues the same wandb run (its id is kept in every checkpoint); WANDB_PROJECT names the "
        "wandb project (default: loop).", default=None)
    early_stopping_patience: Optional[int] = _help("Stop after N evaluations without improvement of --metric.", default=None)
    early_stopping_threshold: float = _help(
        "With --early_stopping_patience: an evaluation counts as an improvement only when --metric beats the best so "
        "far by more than this (0.001: a thousandth of accuracy).", default=0.0)
    verbose: bool = _help("Show the libraries' own output (progress bars, load reports, warnings); also LOOP_VERBOSE=1.", default=False)

    # --- checkpoints and resume ---
    checkpointing_steps: Optional[str] = _help(
        "Save a resumable checkpoint every N optimizer steps (a value below 1: that fraction of the run's steps, "
        "rounded up as in Trainer), or 'epoch'.", default=None)
    save_total_limit: Optional[int] = _help("Keep only the newest K checkpoints (best/ is never removed).", default=None)
    resume_from_checkpoint: Optional[str] = _help(
        "Resume from a checkpoint folder, or 'latest' in output_dir/checkpoints (checksums verified; a damaged one "
        "is skipped), or 'auto' (for requeued jobs: 'latest' when a checkpoint exists, else a first start). "
        "A checkpoint's files load weights-only (no code runs); a file holding other objects is refused, naming it.",
        default=None)

    # --- hub ---
    push_to_hub: bool = _help("Push best/ to the Hub at the end.", default=False)
    hub_model_id: Optional[str] = _help("Hub repository for --push_to_hub (default: the output_dir name).", default=None)

    debug: bool = _help("Show tracebacks for user errors too (same as LOOP_DEBUG=1).", default=False)

    # Integer options that must be >= 1 (any other integer option must be >= 0), and options with
    # a range of their own. Everything is also checked for its type, so an option added later is
    # validated without being listed here.
    POSITIVE = ("per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs",
                "gradient_accumulation_steps", "max_steps", "max_train_samples", "max_eval_samples",
                "max_test_samples", "max_length", "save_total_limit", "early_stopping_patience", "preprocessing_num_workers",
                "learning_rate", "lora_r", "lora_alpha", "ddp_timeout", "adam_epsilon")
    # Numbers of steps that may be a fraction of the run's steps instead (steps_option checks them).
    STEPS = ("warmup_steps", "logging_steps", "eval_steps")
    # Text options that are comma-separated lists: a YAML list is joined with commas for them (any other
    # option takes one value). Paths whose leading ~ is expanded (a quoted '~/x' on the shell, or any YAML
    # value, arrives unexpanded); a variant's own (examples/distill.py's --teacher) are also the same run named
    # by another path, and named by their last part in best/training_args.json (resume_checks.path_options).
    # Columns that must differ: (option, option, what would happen).
    COMMA_LISTS = ("label_names", "metrics", "report_to", "lora_target_modules", "config_overrides", "class_weights",
                   "extra_eval_files", "extra_eval_splits", "label_column")
    PATHS = ("model_name_or_path", "tokenizer_name", "dataset_name", "train_file", "validation_file", "test_file",
             "output_dir", "resume_from_checkpoint")
    DISTINCT_COLUMNS = (("text_column", "label_column", "the model would read the label it is to predict"),
                        ("text_pair_column", "label_column", "the model would read the label it is to predict"),
                        ("text_pair_column", "text_column", "each example would pair its text with itself"),
                        ("weight_column", "text_column", "the model would read its own weights as text"),
                        ("weight_column", "text_pair_column", "the model would read its own weights as text"),
                        ("weight_column", "label_column", "each example's label would be its weight"))

    def __post_init__(self):
        """Every check a configuration can fail before any data or model is read, group by group; each refusal is
        one UserError naming the option and the fix, each warning one line (on the main process only)."""
        self._check_fields()
        self._check_paths()
        self._check_label_columns()
        self._check_columns()
        self._check_problem_type()
        self._check_optimization()
        self._check_runtime()
        self._check_lora()
        self._check_saving()
        self._check_report_to()
        self._check_output_dir()
        self._check_scoring()
        self._check_data_files()
        if self.eval_only:
            self._check_eval_only()
        self._check_torch_dtype()
        self._check_truncation_side()
        self._check_splits()

    def _check_paths(self):
        """'~' expanded in every path option, and each one (output_dir as an absolute path too) readable as UTF-8."""
        for name in self.PATHS:  # '~/runs/x' is a folder in the home directory, not one named '~' here
            value = getattr(self, name)
            if isinstance(value, str) and value.startswith("~"):  # Hub ids never start with ~; 'latest' is kept
                setattr(self, name, os.path.expanduser(value))
        for name in self.PATHS + ("extra_eval_files",):
            check_utf8_path(name, getattr(self, name))
            bad = control_character(getattr(self, name))
            if bad:  # `output_dir: "runs\new"`: a folder named 'runs', a line feed, 'ew', trained into
                raise UserError(f"--{name} {getattr(self, name)!r} holds a control character ({bad}); write the path "
                                f"without it.")
        check_utf8_path("output_dir", os.path.abspath(self.output_dir))  # a relative one in a folder not named in UTF-8

    def _check_columns(self):
        """The columns named: distinct from one another and from the label ids' column."""
        for a, b, why in self.DISTINCT_COLUMNS:
            if getattr(self, a) is not None and getattr(self, a) == getattr(self, b):
                raise UserError(f"--{a} and --{b} are both '{getattr(self, a)}', so {why}; point them at different "
                                f"columns.")
            if b == "label_column" and getattr(self, a) in (self.label_columns() or ()):
                raise UserError(f"--{a} '{getattr(self, a)}' is also one of the columns of --{b} "
                                f"'{self.label_column}', so {why}; point them at different columns.")
        for name in ("text_column", "text_pair_column"):  # (the weights move to a column of their own first)
            if getattr(self, name) == "labels" and self.label_column != "labels":
                # the label ids go into a column of that name (the models' `labels` input): it would overwrite this
                # one, and the model would read its own label ids, silently
                raise UserError(f"--{name} is 'labels', the column the loop writes the label ids into (the model's "
                                f"`labels` input), so the model would read its own labels; rename that column in the "
                                f"data.")

    def _check_problem_type(self):
        """--problem_type known, and --metric's default from it."""
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise UserError(f"--problem_type '{self.problem_type}' is unknown; choose one of {', '.join(PROBLEM_TYPES)} "
                            f"(or leave it out: lists of labels are multi-label, others single-label).")
        if self.metric is None:  # a regression has no accuracy: its default is the trained objective
            self.metric = "mse" if self.problem_type == "regression" else "accuracy"
            self.metric_defaulted = True  # (multi-label data, known once read, picks by f1: score_as_multi_label)

    def _check_runtime(self):
        """Seeds numpy can take; the attention kernels and the compile mode."""
        for name in ("seed", "data_seed"):  # (negative ones are refused with the other integers)
            if getattr(self, name) is not None and getattr(self, name) >= 2**32:
                raise UserError(f"--{name} must be below 2**32 (numpy's limit), got {getattr(self, name)}.")
        self.sdpa_backends = parse_sdpa_backends(self.sdpa_backends)
        if self.torch_compile_mode is not None:
            if self.torch_compile_mode not in COMPILE_MODES:
                raise UserError(f"--torch_compile_mode '{self.torch_compile_mode}' is unknown; choose one of "
                                f"{', '.join(COMPILE_MODES)}.")
            self.torch_compile = True  # as Trainer does: a mode asks for compilation
            self.check_compile_mode()

    def _check_lora(self):
        """The LoRA options: in range, and given only with --lora_r."""
        if self.lora_r and self.from_scratch and not self.eval_only and is_main_rank():
            # adapters on a random body that never trains: a speed or memory benchmark (bench/proof.py), no model
            warnings.warn("--lora_r trains small adapters on a body that stays frozen, and --from_scratch makes that "
                          "body random: the model learns little (fine for a speed or memory benchmark); drop "
                          "--from_scratch to fine-tune the pretrained weights.", stacklevel=1)
        if not 0 <= self.lora_dropout < 1:
            raise UserError(f"--lora_dropout must be at least 0 and below 1, got {self.lora_dropout}.")
        if self.lora_r and not self.eval_only:
            from .lora import NO_PEFT, peft_installed

            if not peft_installed():  # said now, not after the data is read and tokenized (minutes for a large set)
                raise UserError(NO_PEFT)
        unused = [f"--{n}" for n in ("lora_alpha", "lora_target_modules") if getattr(self, n) is not None]
        if self.lora_dropout != type(self).lora_dropout:  # (its default is a number: a value away from it was given)
            unused.append("--lora_dropout")
        if unused and not self.lora_r and not self.eval_only:  # (--eval_only names what it ignores)
            raise UserError(f"{' and '.join(unused)} {'applies' if len(unused) == 1 else 'apply'} only with --lora_r "
                            f"(the LoRA rank); add --lora_r 8, say, or drop {'it' if len(unused) == 1 else 'them'} "
                            f"for full fine-tuning.")

    def _check_saving(self):
        """Checkpointing steps; options that would do nothing here (a save limit without checkpoints, a Hub id
        without a push)."""
        if self.checkpointing_steps is not None:
            cs = str(self.checkpointing_steps)
            # ("²" is a digit to isdigit; digits beyond 2**62 go on to steps_option, which says they are too large)
            if cs != "epoch" and not (cs.isascii() and cs.isdigit() and 0 < int(cs) <= 2**62):
                value = _steps_number(cs)  # read as --eval_steps is (1e-1, 5.0), as Trainer reads save_steps
                if value is None:
                    raise UserError(f"--checkpointing_steps must be a whole number of steps (1 or more), or a fraction "
                                    f"of the run's steps between 0 and 1 (0.25), or 'epoch', got '{cs}'.")
                if steps_option("checkpointing_steps", value, also=", or 'epoch'") >= 1:
                    self.checkpointing_steps = str(int(value))  # 10.0 is 10 (the text a resume records)
        for name in ("logging_steps", "eval_steps"):
            if getattr(self, name) is not None:
                setattr(self, name, steps_option(name, getattr(self, name)))
        if self.save_total_limit is not None and self.checkpointing_steps is None and not self.eval_only \
                and is_main_rank():
            warnings.warn(f"--save_total_limit {self.save_total_limit} keeps the newest checkpoints, but without "
                          f"--checkpointing_steps only a stop signal saves one (best/ is kept either way).",
                          stacklevel=1)
        if self.hub_model_id and not self.push_to_hub and is_main_rank():
            warnings.warn(f"--hub_model_id {self.hub_model_id} is used only with --push_to_hub: nothing will be pushed.",
                          stacklevel=1)  # here, in the package: a '[loop] warning:' line

    def _check_scoring(self):
        """The metric(s) and where they are read; labels and class weights; early stopping."""
        self.metric_list()  # validates --metric / --metrics / --greater_is_better
        where, name = self.metric_source()
        if where:  # Trainer's eval_ood_accuracy, or OOD_accuracy: the key the run logs, eval_ood_accuracy
            self.metric = f"{where}_{name}"
        label_fields = sorted({"num_labels", "id2label", "label2id", "problem_type"} & set(self.overrides_dict()))
        if label_fields:  # (overrides_dict also validates the syntax early)
            raise UserError(f"--config_overrides {', '.join(label_fields)}: the labels and the problem type come from "
                            f"the data, --label_names and --problem_type; remove {', '.join(label_fields)} from "
                            f"--config_overrides.")
        self.label_list()
        weights = self.class_weight_list()
        if weights is not None:  # one spelling per meaning ('1, 4' = '1.0,4'): a resume compares the text
            self.class_weights = weights if weights == "balanced" else \
                ",".join(f"{n}={w!r}" if n is not None else repr(w) for n, w in weights)
        if self.early_stopping_threshold and not self.early_stopping_patience:
            raise UserError("--early_stopping_threshold says how much an evaluation must improve for early stopping; "
                            "add --early_stopping_patience N (or drop the threshold).")

    def _check_data_files(self):
        """Local files (each there, one format) and the extra evaluation sets."""
        for name in ("train_file", "validation_file", "test_file"):
            path = getattr(self, name) or None  # '' (e.g. to unset a YAML value) means not given
            setattr(self, name, path)
            if path is not None:
                data_files(path, f"--{name}")  # a file, or a pattern of shards: each there, one format
        self.extra_evals()  # names, files and splits of the extra evaluation sets

    def _check_truncation_side(self):
        """--truncation_side: right or left, in any case."""
        if self.truncation_side is not None:
            side = str(self.truncation_side).lower()
            if side not in ("right", "left"):
                raise UserError(f"--truncation_side '{self.truncation_side}' is unknown; choose right (keep a long "
                                f"text's start) or left (keep its end).")
            self.truncation_side = side

    def _check_splits(self):
        """Which splits and files go together, and the share of train carved for evaluation."""
        if self.validation_split_percentage is not None and not 0 < self.validation_split_percentage < 100:
            raise UserError(f"--validation_split_percentage must be between 0 and 100, got "
                            f"{self.validation_split_percentage}.")
        if self.validation_file and not self.train_file and not self.eval_only:
            raise UserError("--validation_file needs --train_file too (local files replace the Hub dataset).")
        if self.eval_only and self.test_file and not (self.train_file or self.validation_file):
            raise UserError("--test_file needs --validation_file (or --train_file) too; with --eval_only the "
                            "evaluation file is scored, and the test file beside it.")
        if self.test_file and not self.train_file and not self.eval_only:
            raise UserError("--test_file needs --train_file too (local files replace the Hub dataset); for a Hub "
                            "dataset's own test split use --test_split.")
        if (self.train_file or self.validation_file) and (self.eval_split or self.test_split or self.dataset_config_name
                                                          or self.train_split != "train"):
            flag = "--eval_split" if self.eval_split else "--test_split" if self.test_split else \
                "--dataset_config_name" if self.dataset_config_name else "--train_split"
            given = "--train_file" if self.train_file else "--validation_file"
            what = "a configuration" if flag == "--dataset_config_name" else "a split"
            raise UserError(f"{flag} picks {what} of --dataset_name, but {given} replaces the Hub dataset; "
                            f"drop {flag}, or pass the files of your splits (--train_file, --validation_file, "
                            f"--test_file).")
        if self.test_split is not None and self.test_split in (self.train_split, self.eval_split):
            flag = "--train_split" if self.test_split == self.train_split else "--eval_split"
            raise UserError(f"--test_split and {flag} are both '{self.test_split}'; the test split is held out, so "
                            f"pick another one.")
        if self.max_test_samples is not None and not (self.test_file or self.test_split) and is_main_rank():
            warnings.warn(f"--max_test_samples {self.max_test_samples} is used only with --test_file or --test_split: "
                          f"there is no test data.", stacklevel=1)
        given = "--validation_file" if self.validation_file else "--eval_split" if self.eval_split else None
        if self.validation_split_percentage is not None and given and is_main_rank():
            warnings.warn(f"--validation_split_percentage {self.validation_split_percentage:g} is used only when there "
                          f"is no evaluation data, and {given} gives it: no split is carved from train.", stacklevel=1)

    def check_compile_mode(self):
        """--torch_compile_mode (or accelerate's dynamo mode, distributed.take_over_dynamo) against accumulation."""
        mode = self.torch_compile_mode
        # both modes capture CUDA graphs (inductor's triton.cudagraphs): max-autotune as reduce-overhead does
        if mode in CUDA_GRAPH_MODES and self.auto_find_batch_size:
            raise UserError(f"--auto_find_batch_size raises --gradient_accumulation_steps when it lowers the batch, "
                            f"and --torch_compile_mode {mode} (CUDA graphs) cannot accumulate gradients; "
                            f"drop one of them (max-autotune-no-cudagraphs or default compile with it).")
        if mode in CUDA_GRAPH_MODES and self.gradient_accumulation_steps > 1:
            # the CUDA graph's backward output becomes .grad, and the next micro-batch's replay overwrites it
            raise UserError(f"--torch_compile_mode {mode} (CUDA graphs) cannot accumulate gradients over "
                            f"{self.gradient_accumulation_steps} micro-batches; use max-autotune-no-cudagraphs or "
                            "default, or --gradient_accumulation_steps 1.")

    def _check_optimization(self):
        """The optimizer's and the schedule's options: ranges, the two ways of giving a warmup, and the
        schedule's own arguments (checked against what its transformers function takes)."""
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        steps = self.warmup_steps
        if steps is not None:
            steps = steps_option("warmup_steps", steps, zero=True)
            self.warmup_steps = steps or None  # 0 and none are one setting (a resume compares them)
            if steps and self.warmup_ratio:
                raise UserError(f"--warmup_steps {steps:g} and --warmup_ratio {self.warmup_ratio:g} both set the warmup; "
                                f"give one of them (--warmup_ratio 0 clears one a --config gives).")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name} must be in [0, 1), got {getattr(self, name)}.")
        if not self.adam_epsilon > 0:
            raise UserError(f"--adam_epsilon must be above 0, got {self.adam_epsilon}.")
        if not 0 <= self.label_smoothing_factor < 1:
            raise UserError(f"--label_smoothing_factor must be in [0, 1), got {self.label_smoothing_factor}.")
        if self.lr_scheduler_type not in SCHEDULERS:
            why = " (it steps on an evaluation metric, not on the optimizer's steps)" \
                if self.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy") else ""
            raise UserError(f"--lr_scheduler_type '{self.lr_scheduler_type}' is unknown or not supported{why}; choose "
                            f"one of {', '.join(SCHEDULERS)}.")
        if self.lr_scheduler_type == "constant" and (steps or self.warmup_ratio):
            flag = "--warmup_steps" if steps else "--warmup_ratio"
            raise UserError(f"--lr_scheduler_type constant has no warmup, so {flag} would be ignored; use "
                            f"--lr_scheduler_type constant_with_warmup, or drop {flag}.")
        if not self.eval_only:  # (nothing is scheduled when nothing trains)
            self.lr_scheduler_kwargs = kwargs_text(self.lr_scheduler_type, self.lr_scheduler_kwargs,
                                                   self.learning_rate)

    def num_warmup_steps(self, total):
        """The warmup in optimizer steps for a run of `total` steps: --warmup_steps (a fraction below 1
        of `total` rounded up, as Trainer rounds it), else --warmup_ratio of `total` rounded down (as this
        loop always rounded it: a resumed run keeps its schedule). The product is rounded to 9 decimals first, as
        schedules.steps rounds epochs: 0.29 x 100 is 28.999999999999996 in floating point, 29 steps, not 28."""
        steps = self.warmup_steps
        if steps is not None:
            return int(steps) if steps >= 1 else steps_share(steps, total)
        return int(round(self.warmup_ratio * total, 9))

    def schedule_kwargs(self):
        """--lr_scheduler_kwargs as a dict ({} when not given)."""
        return json.loads(self.lr_scheduler_kwargs) if self.lr_scheduler_kwargs else {}

    def _check_eval_only(self):
        """--eval_only trains nothing: the options that only training uses but that would change what is
        scored, or do something after training, are switched off with one warning (so a training run's
        YAML config plus --eval_only works); the other training options are simply unused."""
        if self.model_name_or_path == type(self).__dataclass_fields__["model_name_or_path"].default:
            raise UserError(f"--eval_only scores a trained classifier, and {self.model_name_or_path} (the default "
                            f"--model_name_or_path) is a base model; pass the one to score, e.g. --model_name_or_path "
                            f"output/best.")
        # --config_overrides: best/'s config.json holds the run's own; others would change the model scored
        # --report_to: the scores go to eval_results.json, no tracker (a run's trackers hold its curves)
        ignored = [f"--{n}" for n in ("from_scratch", "config_overrides", "lora_r", "lora_alpha", "lora_target_modules",
                                      "lora_dropout", "resume_from_checkpoint", "push_to_hub", "ignore_mismatched_sizes",
                                      "report_to")
                   if (self.lora_dropout != type(self).lora_dropout if n == "lora_dropout" else
                       self.report_to != "none" if n == "report_to" else getattr(self, n))]
        if ignored and is_main_rank():
            warnings.warn(f"--eval_only scores the weights of --model_name_or_path as they are and trains nothing: "
                          f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored.", stacklevel=1)
        self.from_scratch, self.push_to_hub, self.ignore_mismatched_sizes = False, False, False  # a new head scores at random
        self.lora_r = self.lora_alpha = self.lora_target_modules = self.resume_from_checkpoint = None
        self.config_overrides, self.report_to = None, "none"
        self.weight_column = None  # training only: the scored data need not have it

    def _check_torch_dtype(self):
        """--torch_dtype: one spelling per dtype (bf16 is bfloat16: a resume compares the text), and only where
        some weights are not trained (the LoRA body, or everything under --eval_only). Whether the accelerator's
        mixed precision fits it is models.check_dtype's, at start."""
        dtype = TORCH_DTYPES.get(str(self.torch_dtype).lower())
        if dtype is None:
            raise UserError(f"--torch_dtype '{self.torch_dtype}' is unknown; choose float32, bfloat16 or float16.")
        self.torch_dtype = dtype
        if dtype != "float32" and not self.lora_r and not self.eval_only:
            raise UserError(f"--torch_dtype {dtype} is the dtype of frozen weights, and full fine-tuning freezes none "
                            f"(AdamW updates float32 master weights; accelerate launch --mixed_precision "
                            f"{'bf16' if dtype == 'bfloat16' else 'fp16'} already computes in it): add --lora_r 16, "
                            f"say, to keep the model body frozen in {dtype}, or drop --torch_dtype.")

    def score_as_regression(self):
        """--eval_only on a model trained for regression without --problem_type: read the labels as numbers,
        and pick by mse where --metric was the classification default (accuracy)."""
        self.problem_type = "regression"
        if self.metric == "accuracy":
            if self.was_given("metric"):  # asked for by name: a regression has no accuracy, say so (not mse silently)
                raise UserError(f"--metric accuracy: model '{self.model_name_or_path}' is a regression model (its "
                                f"config.json), scored by mse, rmse, mae, r2, pearson or spearman; name one of "
                                f"those, or leave --metric out (mse).")
            self.metric = "mse"
        self.metric_list()  # the metrics still check

    def score_as_multi_label(self, resumed=False):
        """Multi-label data (known once it is read): where --metric was left out, pick best/ (and stop early) by
        f1, micro-averaged over every text's decision on every label. The classes' default, accuracy, is here the
        exact match of a text's whole label set: with many labels rarely right, a harsh and noisy number to pick
        by. `resumed`: the run resumes a checkpoint, whose metric keep_checkpoint_metric took (a multi-label run
        of an earlier loop picked by accuracy, and goes on doing so: best/ and early stopping never switch
        mid-run). Returns the line naming the metric, or None where --metric was given."""
        if not self.metric_defaulted:
            return None
        if self.metric == "accuracy" and resumed:
            return ("metric: accuracy (exact match of whole label sets), as the resumed checkpoint picked by it; a new "
                    "multi-label run without --metric picks by f1")
        if self.metric == "accuracy":
            self.metric = "f1"
            self.metric_list()  # (--metrics' default follows: just f1)
        return ("metric: f1 (micro-averaged over every text's decision on each label), the default for multi-label "
                "data; --metric accuracy picks by exact matches of whole label sets")

    def keep_checkpoint_metric(self, recorded, defaulted, multi_label=False):
        """A resume without --metric, before the data is read (the main process; check_output_dir shares the
        result): a checkpoint that took f1 as its default (`defaulted`, as it records: multi-label data) goes on
        with f1, and so does a multi-label one (`multi_label`, as it records since 2026-12-04) that named --metric f1,
        what this run would pick by once the data is read. One of an earlier loop records nothing: it picked by
        accuracy, its default for multi-label data too, which is this run's until the data is read, and which
        score_as_multi_label then keeps. Other metrics given by name, then or now, compare as any option."""
        if self.metric_defaulted and self.metric == "accuracy" and recorded == "f1" and (defaulted or multi_label):
            self.metric = recorded

    def label_columns(self):
        """--label_column's columns when it names several (toxic,obscene,insult: multi-label, each column a label
        that applies where it holds 1 or true), in the order given; None for one column."""
        return self.label_column.split(",") if "," in self.label_column else None

    def _check_label_columns(self):
        """--label_column as a comma list: distinct, non-empty names, one spelling ('a, b' is 'a,b': a resume
        compares the text)."""
        if "," not in self.label_column:
            return
        names = [n.strip() for n in self.label_column.split(",")]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise UserError(f"--label_column '{self.label_column}' must be one column, or for multi-label data "
                            f"several distinct, non-empty, comma-separated columns (one 0/1 column per label).")
        self.label_column = ",".join(names)

    def _check_fields(self):
        """Every option: its type, finite numbers, no negative numbers among the loop's own options (a variant's own
        field may be negative, unless its POSITIVE lists it), no empty required text; the STEPS by steps_option.

        An empty text for an optional option means "not given" (so a YAML key can be unset).
        """
        hints = typing.get_type_hints(type(self))
        own = {f.name for f in dataclasses.fields(TrainConfig)}
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            name, value = f.name, getattr(self, f.name)
            base, optional = _option_type(hints.get(f.name))
            if base not in (int, float, str, bool):
                continue  # a type of a subclass's own: its own checks
            if isinstance(value, str) and base is not str:  # set from Python (a notebook): read as the flag is
                value = _from_text(name, value, base, optional)
                setattr(self, name, value)
            if value is None:
                if not optional:
                    raise UserError(f"--{name} must be given.")
                continue
            if base is bool and not isinstance(value, bool):
                raise UserError(f"--{name} must be true or false, got {value!r}.")
            if base is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserError(f"--{name} must be an integer, got {value!r}.")
            if base is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UserError(f"--{name} must be a number, got {value!r}.")
                if not math.isfinite(value):
                    raise UserError(f"--{name} must be a finite number, got {value}.")
            # the loop's own counts and rates are >= 0; a variant's own field may be signed (a shift, a layer -1)
            if base in (int, float) and name not in self.STEPS and (name in own or name in self.POSITIVE):
                positive = name in self.POSITIVE
                if value < 0 or (positive and (value < 1 if base is int else value <= 0)):
                    what = ("a positive integer" if base is int else "positive") if positive else \
                        ("an integer >= 0" if base is int else "a number >= 0")
                    raise UserError(f"--{name} must be {what}, got {value}.")
                if base is int and value > 2**62:
                    raise UserError(f"--{name} is too large ({value}).")
            if base is str:
                if name == "checkpointing_steps" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = str(value)  # TrainConfig(checkpointing_steps=10) in code: the flag's text '10'
                    setattr(self, name, value)
                if not isinstance(value, str):
                    raise UserError(f"--{name} must be text, got {value!r}.")
                if not value.strip():
                    if not optional and f.default == value:  # a variant's own default, not the user's input
                        raise UserError(f"{type(self).__name__}.{name} defaults to {value!r}, an empty text, which "
                                        f"--{name} refuses: declare it `{name}: Optional[str] = None` for an option "
                                        f"that may be left out, or give it a default.")
                    if not optional:
                        raise UserError(f"--{name} must not be empty.")
                    setattr(self, name, None)  # '' unsets an optional option (e.g. a YAML value)

    def _check_report_to(self):
        from accelerate.tracking import get_available_trackers
        from accelerate.utils import LoggerType

        names = [n.strip() for n in self.report_to.split(",")]
        self.report_to = ",".join(names)  # "tensorboard, wandb": accelerate takes the names as they are
        if names == ["none"] or names == ["all"]:
            return
        known = [t.value for t in LoggerType if t.value != "all"]
        available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
        for n in names:
            if n in ("none", "all"):  # beside tracker names: which was meant?
                raise UserError(f"--report_to '{self.report_to}': '{n}' stands alone; give {n} alone, or the "
                                f"trackers' names alone.")
            if n not in known:
                raise UserError(f"--report_to '{n}' is not a tracker; use none, all, or a comma list of "
                                f"{', '.join(known)}.")
            if n not in available and not self.eval_only:  # (--eval_only ignores it: a training YAML's)
                raise UserError(f"--report_to '{n}' is not installed here; pip install it or drop it from --report_to.")

    def _check_output_dir(self):
        """A folder we can create and write into; checked before any work, changing nothing."""
        out = self.output_dir
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(f"--output_dir '{out}' is a file, not a folder; choose another --output_dir.")
        probe = os.path.abspath(out)
        while not os.path.exists(probe):  # the nearest folder that exists is where we create ours
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise UserError(f"--output_dir '{out}' cannot be created: '{probe}' is a file; choose another --output_dir.")
        if not os.access(probe, os.W_OK | os.X_OK):
            if read_only_mount(probe):  # no permission change writes to a read-only filesystem
                raise UserError(f"--output_dir '{out}' is on a read-only filesystem ('{probe}'); choose a folder on a "
                                f"writable disk.")
            raise UserError(f"--output_dir '{out}' is not writable ('{probe}' is read-only for this user); fix its "
                            f"permissions or choose another --output_dir.")

    def overrides_dict(self):
        """Parse `--config_overrides "a=1,b=x"` into {"a": "1", "b": "x"} (types are fixed against the config)."""
        if not self.config_overrides:
            return {}
        out = {}
        for part in re.split(r",(?![^\[{]*[\]}])", self.config_overrides):  # commas inside [a,b] and {...} stay
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise UserError(f"--config_overrides is malformed at '{part}'; use 'key=value,key=value', e.g. 'n_layers=2,dim=64'.")
            out[key.strip()] = value.strip()
        return out

    def extra_evals(self, check_keys=True):
        """The extra evaluation sets as [(name, "file" or "split", path or split name)]: the files, then the splits
        (--extra_eval_files, then --extra_eval_splits); refused in one line: a malformed or repeated name, a
        name whose metric keys would be another's (eval_NAME_<metric> against eval_<metric>; not checked with
        check_keys=False, which metric_source uses), a file that is not there, splits without a Hub dataset."""
        import glob

        out = []
        for flag, kind in (("--extra_eval_files", "file"), ("--extra_eval_splits", "split")):
            spec = getattr(self, flag[2:])
            pieces = (spec or "").split(",")
            for at, part in enumerate(p.strip() for p in pieces):
                if not part:
                    continue
                name, eq, source = part.partition("=")
                if not eq or (kind == "file" and os.path.isfile(os.path.expanduser(part))):
                    name, source = None, part  # a file whose name holds '=' is the file
                name, source = (name or "").strip() or None, source.strip()
                if not source:
                    raise UserError(f"{flag} '{part}' names no {kind}; write NAME={kind.upper()}.")
                if kind == "file":
                    source = os.path.expanduser(source)
                    if name is None:
                        if glob.has_magic(source) and not os.path.isfile(source):
                            raise UserError(f"{flag} '{source}' is a pattern; name the set it reads, e.g. "
                                            f"'ood={source}' (its scores are logged as eval_ood_<metric>).")
                        name = os.path.splitext(os.path.basename(source.rstrip(os.sep)))[0]
                    try:
                        data_files(source, f"{flag} {name}")
                    except UserError:
                        comma_in_path(flag, name, source, pieces[at + 1:])
                        raise
                elif name is None:
                    name = source
                if not EXTRA_EVAL_NAME.fullmatch(name):
                    raise UserError(f"{flag}: '{name}' cannot name an evaluation set (its metrics are logged as "
                                    f"eval_{name}_<metric>); use letters, digits, _ and - (64 at most), e.g. "
                                    f"'ood={source}'.")
                if any(name.lower() == n.lower() for n, _, _ in out):  # (their files' names differ in case only)
                    raise UserError(f"{flag}: two evaluation sets are named '{name}'; give each its own name "
                                    f"(NAME={kind.upper()}).")
                twice = next((n for n, k, s in out if (k, s) == (kind, source)), None)
                if twice:
                    raise UserError(f"{flag}: the sets '{twice}' and '{name}' are both {kind} '{source}'; keep one.")
                out.append((name, kind, source))
        if any(kind == "split" for _, kind, _ in out) and (self.train_file or self.validation_file):
            given = "--train_file" if self.train_file else "--validation_file"
            raise UserError(f"--extra_eval_splits names splits of --dataset_name, but {given} replaces the Hub "
                            f"dataset; pass the extra sets as files with --extra_eval_files.")
        # (confusion, confusion_cells and per_class: --eval_only's)
        keys = ["loss", "samples", "confusion", "confusion_cells", "per_class"] + \
            (self.metric_list() if check_keys else [])
        for name, _, _ in out:  # eval_f1_* would read as the evaluation split's eval_f1_macro, and the reverse
            clash = next((k for k in keys if k.startswith(name + "_")), None)
            if clash:
                raise UserError(f"an evaluation set named '{name}' would log keys beginning eval_{name}_, as the "
                                f"evaluation split's eval_{clash} does; rename the set.")
        return out

    def check_extra_names(self, taken, owner):
        """Refuse an extra evaluation set named as one of `taken`, the eval_<name>_* keys the loop class `owner`
        logs itself (Loop.own_eval_names: EMA's raw): its scores would be overwritten."""
        taken = {t.lower() for t in taken}
        clash = next((n for n, _, _ in self.extra_evals() if n.lower() in taken), None)
        if clash:
            raise UserError(f"{owner} logs eval_{clash}_* itself, so an evaluation set cannot be named '{clash}'; "
                            f"rename the set.")

    def metric_list(self):
        """Metric names to compute at each evaluation ('loss' is always logged, never computed).
        A shipped name in another case or with the logged eval_ prefix ('F1', 'eval_f1') is refused
        with the name to use: it would otherwise be looked up on the Hub."""
        names = [n.strip() for n in (self.metrics or "").split(",") if n.strip()]
        shipped = {n.lower(): n for n in KNOWN_DIRECTION if n != "roc_auc"}
        where, metric = self.metric_source()
        on = f"{where}_" if where else ""  # --metric ood_F1: 'did you mean ood_f1'
        for flag, given in [("--metric", metric)] + [("--metrics", n) for n in names]:
            meant = shipped.get(given.lower().removeprefix("eval_"))
            if meant and meant != given:
                shown = on if flag == "--metric" else ""
                raise UserError(f"{flag} '{shown}{given}' is not a metric name; did you mean '{shown}{meant}'?")
        if metric not in names and metric != "loss":
            names.insert(0, metric)
        return [n for n in names if n != "loss"]

    def metric_source(self):
        """(set, name) of --metric: the extra evaluation set it is read on (None: the evaluation split) and the
        metric's own name. `--metric ood_accuracy` (or Trainer's form, eval_ood_accuracy) is the accuracy of the
        extra evaluation set 'ood', which then picks best/ and drives early stopping (Trainer's
        metric_for_best_model naming one of several eval sets); a whole metric name (f1_macro) is the
        evaluation split's. The longest set name that fits wins (sets 'a' and 'a_b': a_b_f1 is a_b's f1)."""
        metric = self.metric
        if metric in KNOWN_DIRECTION or not (self.extra_eval_files or self.extra_eval_splits):
            return None, metric
        names = sorted((n for n, _, _ in self.extra_evals(check_keys=False)), key=len, reverse=True)
        parses = []  # as written, then without Trainer's eval_ (a set may be named eval_hard)
        for text in dict.fromkeys([metric, metric[len("eval_"):] if metric.lower().startswith("eval_") else metric]):
            name = next((n for n in names if text.lower().startswith(n.lower() + "_") and len(text) > len(n) + 1), None)
            if name:
                parses.append((name, text[len(name) + 1:]))
        # the reading that names a metric we know wins (set 'eval', eval_eval_accuracy: its accuracy)
        return next((p for p in parses if p[1] in KNOWN_DIRECTION), parses[0] if parses else (None, metric))

    def check_metrics(self, own_metrics, own_eval_names, owner):
        """Refuse, before any work, metrics the run cannot compute: a regression's (mse, pearson) when it
        classifies, and a --metric that reads as SET_<metric> where no evaluation set is named SET (a set dropped
        on resume, a typo); each would be looked up on the Hub as a metric of its own, or fail at the first
        evaluation. `own_metrics` and `own_eval_names` are the loop class `owner`'s (a variant's own metric may be
        named top5_accuracy, or mse)."""
        from .scores import REGRESSION_METRICS, check_metric_code

        where, name = self.metric_source()
        # a metric script or someone's Hub module runs its code: only with --trust_remote_code
        check_metric_code(self.metric_list(), self.trust_remote_code, skip=tuple(own_metrics) + REGRESSION_METRICS,
                          metric=name)
        known = None if name in own_metrics else KNOWN_DIRECTION.get(name)
        if self.greater_is_better is not None and known is not None and bool(self.greater_is_better) != known:
            said, truth = ("higher", "lower") if self.greater_is_better else ("lower", "higher")
            raise UserError(f"--greater_is_better {str(bool(self.greater_is_better)).lower()} says a {said} {name} is "
                            f"better, but a {truth} one is: best/ would keep the worst evaluation; drop "
                            f"--greater_is_better (it is for metrics whose direction the loop does not know).")
        # (a regression is never guessed in training: it needs the flag; --eval_only learns it from the model)
        if self.problem_type != "regression" and not self.eval_only:
            numeric = [n for n in self.metric_list() if n in REGRESSION_METRICS and n not in own_metrics]
            if numeric:
                flag, shown = ("--metric", self.metric) if numeric[0] == name else ("--metrics", numeric[0])
                raise UserError(f"{flag} {shown} scores a regression (a number per text), but this run "
                                f"classifies; pick accuracy, f1, precision, recall or matthews_correlation, or pass "
                                f"--problem_type regression for numeric labels.")
        if where and self.metric in own_metrics:  # hard_gap: the variant's own metric, or set 'hard''s 'gap'?
            raise UserError(f"--metric {self.metric} names {owner}'s own metric and also reads as the {name} of the "
                            f"evaluation set '{where}'; rename the set.")
        if where or name in own_metrics or name in KNOWN_DIRECTION:
            return
        bare = name[len("eval_"):] if name.lower().startswith("eval_") else name
        if bare != name and bare in own_metrics:  # Trainer's metric_for_best_model="eval_macro_f1"
            raise UserError(f"--metric {self.metric} names {owner}'s own metric '{bare}' with Trainer's 'eval_' "
                            f"prefix, which the loop's metric names do not have; pass --metric {bare}.")
        for i, c in enumerate(bare):
            head, rest = bare[:i], bare[i + 1:]
            if c != "_" or not EXTRA_EVAL_NAME.fullmatch(head) or not (rest in KNOWN_DIRECTION or rest in own_metrics):
                continue
            if head.lower() in {n.lower() for n in own_eval_names}:
                raise UserError(f"--metric {self.metric}: {owner} logs eval_{head}_* itself, and those scores cannot "
                                f"pick best/; pick by the evaluation split's {rest} or an extra evaluation set's.")
            sets = [n for n, _, _ in self.extra_evals()]
            raise UserError(f"--metric {self.metric} reads as the {rest} of an evaluation set '{head}', but no extra "
                            f"evaluation set is named '{head}' ("
                            + (f"the sets: {', '.join(sets)}" if sets else "there are none")
                            + f"); add it with --extra_eval_files {head}=FILE (or --extra_eval_splits), pick by the "
                            f"evaluation split's (--metric {rest}), or, for a metric your compute_metrics returns, list "
                            f"it in the loop's own_metrics.")

    @property
    def data_seed_or_seed(self):
        """The seed of the data's draws (batch order, subsets, carve): --data_seed, else --seed."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def higher_is_better(self):
        """Direction of --metric: --greater_is_better if given, else known from the name."""
        if self.greater_is_better is not None:
            return bool(self.greater_is_better)
        return KNOWN_DIRECTION.get(self.metric_source()[1], True)  # a Hub metric we don't know: higher

    def label_list(self):
        if not self.label_names:
            return None
        names = [n.strip() for n in self.label_names.split(",")]
        if self.problem_type == "regression":  # the one output's name, as pipeline() shows it
            if len(names) != 1 or not names[0]:
                raise UserError(f"--label_names '{self.label_names}': a regression predicts one number; give it one "
                                f"name (or leave it out: the label column's name).")
            return names
        if any(not n for n in names) or len(set(names)) != len(names) or len(names) < 2:
            raise UserError(f"--label_names '{self.label_names}' must be at least two distinct, non-empty, comma-separated names.")
        return names

    def class_weight_list(self):
        """--class_weights as None, 'balanced', or a list of (label name or None, weight): names with
        `=`, else weights in label id order (the data step matches them to the labels)."""
        spec = (self.class_weights or "").strip()
        if not spec:
            return None
        if self.problem_type == "regression":
            raise UserError("--class_weights weighs classes, and a regression has none; drop --class_weights.")
        if spec == "balanced":
            return spec
        out = []
        for part in spec.split(","):
            name, eq, value = part.rpartition("=")
            name = name.strip() if eq else None
            try:
                weight = float(value)
            except ValueError:
                weight = None
            if weight is None or not math.isfinite(weight) or weight < 0 or name == "":
                raise UserError(f"--class_weights '{spec}': '{part.strip()}' is not a weight; give 'balanced', one "
                                f"number >= 0 per label ('1,4'), or label=weight pairs ('NEGATIVE=1,POSITIVE=4').")
            if weight and not 1e-6 <= weight <= 1e6:  # float32 losses: a weight of 1e39 is inf, 1e-50 is 0
                raise UserError(f"--class_weights '{spec}': {weight:g} is out of range; use 0 or 1e-6..1e6 (only "
                                f"the ratios between the weights matter).")
            out.append((name, weight))
        if len({n is None for n, _ in out}) > 1:
            raise UserError(f"--class_weights '{spec}' mixes label=weight pairs and bare weights; use one form.")
        names = [n for n, _ in out if n is not None]
        if len(set(names)) != len(names):
            raise UserError(f"--class_weights '{spec}' names a label twice; give each label one weight.")
        return out

    def every(self, value):
        """A cadence option's value (--logging_steps, --eval_steps, --checkpointing_steps) in optimizer steps: a
        fraction below 1 is that share of the run's steps, rounded up as Trainer rounds it (at least 1), known once
        Loop.setup set `run_steps`; None and whole numbers as they are."""
        if value is None or value >= 1:
            return value
        if self.run_steps is None:
            raise RuntimeError("a fraction of the run's steps was asked for before Loop.setup counted them")
        return max(1, steps_share(value, self.run_steps))

    @property
    def logging_every(self):
        """Optimizer steps between log lines (--logging_steps, a fraction resolved: every())."""
        return self.every(self.logging_steps)

    @property
    def eval_every(self):
        """Optimizer steps between --eval_steps evaluations (a fraction resolved: every()), or None."""
        return self.every(self.eval_steps)

    @property
    def checkpoint_every(self):
        """Optimizer steps between checkpoints (a fraction resolved: every()), 'epoch', or None."""
        cs = self.checkpointing_steps
        if cs is None or str(cs) == "epoch":
            return None if cs is None else "epoch"
        cs = str(cs)  # whole steps as digits, else a fraction below 1 (_check_saving)
        return int(cs) if cs.isdigit() else self.every(float(cs))

    def checkpoint_due(self, step, epoch_end):
        """Whether a checkpoint is due after optimizer step `step`: every --checkpointing_steps steps, and at the end
        of every epoch with 'epoch' (`epoch_end`: the epoch's last step, after its evaluation)."""
        every = self.checkpoint_every
        return (every == "epoch" and epoch_end) or (isinstance(every, int) and step % every == 0)

    def to_dict(self):
        return dataclasses.asdict(self)

    # The options parse_args() found in the --config file or on the command line (None: built another way,
    # e.g. TrainConfig(...) in code). Not a field: never a flag, never recorded.
    given_options = None
    # True when --metric was left out and took its default (accuracy, or a regression's mse; multi-label data
    # turns accuracy into f1: score_as_multi_label). Not a field either.
    metric_defaulted = False
    # The run's optimizer steps, set by Loop.setup once it counted them: what a cadence given as a fraction of the
    # run (--eval_steps 0.1) is a share of (every()). Not a field either.
    run_steps = None
    # A variant's own options that may change on resume, as resume_checks.RESUME_MAY_CHANGE (one whose effect its
    # Loop.resume_signature checks itself: a distillation teacher, by its weights, copied to a job's own disk).
    # Not a field either.
    resume_may_change = ()

    def was_given(self, name):
        """Whether option `name` was given (by parse_args); built in code, whether it differs from its default."""
        if self.given_options is not None:
            return name in self.given_options
        return getattr(self, name) != type(self).__dataclass_fields__[name].default


class _HelpFormatter(argparse.HelpFormatter):
    """One default per option: none where the help text already names it, none for unset (None)
    values, and on/off switches shown as 'off'/'on' rather than '(default: False)'."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if isinstance(action, argparse._StoreFalseAction):  # HfArgumentParser's --no_X twin of a bool option
            return f"Turn off --{action.dest} (on by default)."
        # a help text that states its default says '(default: ...)' or 'Default: ...'; other uses of the word
        # ('NCCL's default', a mode named 'default') must not hide ours
        states_default = re.search(r"\(default\b|\bDefault:", text)
        if states_default or default is None or default is argparse.SUPPRESS or not action.option_strings:
            return text
        if isinstance(default, bool):
            return f"{text} (default: {'on' if default else 'off'})"
        return f"{text} (default: {default})"


class _Parser(HfArgumentParser):
    """HfArgumentParser whose errors are one `error:` line (exit 2) rather than usage + message."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = _HelpFormatter
        # no prefixes: argparse took a unique one silently (--max_step 7 trained 7 steps, where a YAML key must be
        # whole), and called --learn "ambiguous" between --learning_rate and its own --learning-rate spelling
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._args = list(sys.argv[1:] if args is None else args)  # for error()'s hint
        return super().parse_known_args(args, namespace)

    def error(self, message):
        match = re.match(r"argument ([\w/-]+): expected one argument$", message)
        args = getattr(self, "_cli", None) or getattr(self, "_args", [])  # (a --config's values never begin with '-')
        flag, nxt = next(((a, args[i + 1]) for i, a in enumerate(args[:-1])
                          if match and a in match.group(1).split("/")), ("", ""))
        if nxt.startswith("-") and nxt.split("=")[0] not in self._option_string_actions:
            # `--label_names -1,1`: argparse reads a value that begins with '-' as an option, unless a negative number
            raise UserError(f"{flag} '{nxt}': a value that begins with '-' reads as an option (argparse: {message}); "
                            f"write {flag}={nxt}.")
        raise UserError(f"{message.rstrip('.')}{self._source(message)}; see --help.")

    def _source(self, message):
        """' (from --config FILE)' where argparse refuses (`message`) an option's value that came from that file
        (`seed: 7# x`, `warmup_ratio: 10%`: the file's value is parsed first, so it is refused even beside a flag's),
        else ''."""
        match = re.match(r"argument ([\w/-]+): ", message)
        names = match.group(1).split("/") if match else []
        path = next((self._sources[n[2:]] for n in names if n[2:] in getattr(self, "_sources", {})), None)

        def values(args):
            return [v for i, a in enumerate(args) for n in names
                    for v in ([args[i + 1]] if a == n and i + 1 < len(args) else [a[len(n) + 1:]]
                              if a.startswith(n + "=") else [])]
        file_values, flag_values = values(getattr(self, "_file_args", [])), values(getattr(self, "_cli", []))
        quoted = [v for v in file_values if repr(v) in message]
        if path is None or any(repr(v) in message for v in flag_values):
            return ""
        named = any(a.split("=")[0] in names for a in getattr(self, "_cli", []))  # `--seed` with no value: the flag's
        return f" (from --config {path})" if quoted or not named else ""


class _ConfigFlag(argparse.ArgumentParser):
    """The parser that takes --config before the options are known: `--config` with no file is one line (argparse
    printed its own usage of --config alone, as if the loop had no other option)."""

    def error(self, message):
        raise UserError(f"{message.rstrip('.')}: name a YAML or JSON file (--config configs/smoke.yaml); "
                        f"see --help.")


def _not_a_field(annotation):
    """ClassVar and InitVar annotations (also as strings, under `from __future__ import annotations`),
    which a dataclass rightly makes no field of."""
    if annotation is typing.ClassVar or typing.get_origin(annotation) is typing.ClassVar:
        return True
    if annotation is dataclasses.InitVar or isinstance(annotation, dataclasses.InitVar):
        return True
    return isinstance(annotation, str) and re.match(r"\s*(typing\.|dataclasses\.)?(ClassVar|InitVar)\b", annotation)


def in_kernel():
    """Whether this process is a notebook's kernel (Jupyter, Colab, VS Code; a script %run in a notebook has its
    own name in argv[0])."""
    return "ipykernel" in sys.modules and "kernel_launcher" in os.path.basename(sys.argv[0] or "")


def command_line():
    """The process's own flags: sys.argv[1:], or none in a notebook, where sys.argv is its kernel's (-f kernel.json,
    --f=...), no options of ours (parse_args([...]) and main([...]) take them there)."""
    return [] if in_kernel() else sys.argv[1:]


def parse_args(argv=None, config_cls=TrainConfig):
    """Build the config from `--config FILE` (YAML) and the command line; flags win over the file."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    plain = [n for n, kind in getattr(config_cls, "__annotations__", {}).items()
             if n not in fields and not n.startswith("_") and not _not_a_field(kind)]
    if plain:  # a subclass without @dataclass: its options would be neither flags nor recorded in checkpoints
        raise UserError(f"{config_cls.__name__} declares {', '.join(plain)} but is not a dataclass: decorate it "
                        f"with @dataclass (from dataclasses import dataclass), as TrainConfig is.")
    if argv is None:
        argv = command_line()
    pre = _ConfigFlag(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", action="append", default=[])  # several: layered, a later file's keys win
    known, rest = pre.parse_known_args(argv)
    file_args, file_values, sources = [], {}, {}
    if known.config:
        from .config_files import yaml_to_argv  # (here: config_files imports TrainConfig from this module)

        file_args = yaml_to_argv(known.config, config_cls, file_values, sources)
    parser = _Parser(config_cls)
    parser._sources, parser._file_args, parser._cli = sources, file_args, rest  # a refused value's file
    parser.set_defaults(**file_values)  # what no flag can give (a variant's `[]` or `~`); a flag still wins
    parser.add_argument("--config", default=None, help="YAML file with any of these options (relative paths in it "
                        "are from the current folder); flags override it. Give it more than once to layer files: "
                        "a later file's keys replace an earlier one's.")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="Print loop's version and the folder it runs from, and exit.")
    # argparse keeps the last value given, so the file's values go first and the command line wins.
    outputs = parser.parse_args_into_dataclasses(args=file_args + rest, look_for_args_file=False,
                                                 return_remaining_strings=True)
    cfg, unknown = outputs[0], outputs[-1]  # (config, [namespace of --config,] leftover strings)
    if unknown:
        flag = next((a for a in unknown if a.startswith("-")), unknown[0])
        hint = expanded_pattern_hint(flag, rest) or option_hint(flag.split("=")[0], config_cls)
        raise UserError(f"unrecognized argument '{flag}'; {hint + '; ' if hint else ''}see --help for the options.")
    # which options the file or the command line gave (argparse's own reading):
    # an option given at its default value is still given (--eval_only then reads that column, not a
    # recorded one)
    probe = _Parser(config_cls)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given, _ = probe.parse_known_args(file_args + rest)
    cfg.given_options = frozenset(vars(given)) | frozenset(file_values)
    _check_replaced_dataset(cfg, known.config, sources, set(vars(probe.parse_known_args(rest)[0])))
    return cfg


def _check_replaced_dataset(cfg, configs, sources, flags):
    """A --dataset_name given where a --train_file or --validation_file given as early or earlier (the same file,
    an earlier --config, or both flags) replaces it: warned about in one line (it was silent: the local file is
    read, the Hub dataset not). A file given later (the shipped configs/imdb.yaml's dataset_name, then
    --train_file) replaces it, as documented, silently. `sources`: the --config file of each key; `flags`: the
    options the command line gave."""
    order = {path: i for i, path in enumerate(configs)}  # a later --config layers over an earlier one

    def level(name):
        return len(configs) if name in flags else order[sources[name]]
    if "dataset_name" not in cfg.given_options or not getattr(cfg, "dataset_name", None):
        return
    files = [n for n in ("train_file", "validation_file") if n in cfg.given_options and getattr(cfg, n, None)]
    if not files or level("dataset_name") < min(level(n) for n in files) or not is_main_rank():
        return
    name = min(files, key=level)

    def where(n):
        return "on the command line" if n in flags else f"in --config {sources[n]}"
    warnings.warn(f"--dataset_name {cfg.dataset_name} ({where('dataset_name')}) is ignored: --{name} "
                  f"{getattr(cfg, name)} ({where(name)}) replaces the Hub dataset; to read the Hub dataset, clear the "
                  f"files with --train_file '' --validation_file ''.", stacklevel=1)
def data_files(path, flag):
    """The files of a data option, in name order: the file itself, or those a glob pattern matches
    ('shards/train-*.parquet', '**' for subfolders; quoted, so the shell leaves it whole), all of one
    format. A folder is refused: a Hub dataset's folder holds every split's shards side by side."""
    import glob

    if glob.has_magic(path) and not os.path.isfile(path):
        matched = sorted(glob.glob(path, recursive=True))
        for f in matched:
            if os.path.islink(f):
                check_readable(f, flag)  # (a link into a folder this user cannot enter: named so; rev3 F1)
        gone = next((f for f in matched if dangling(f)), None)
        if gone:  # a shard moved away from under its link: the run would train on the others, saying nothing
            raise UserError(f"{flag} '{path}' matches '{gone}', a link to '{os.path.realpath(gone)}', which does not "
                            f"exist; point the link at the file, remove it, or narrow the pattern.")
        files = [f for f in matched if os.path.isfile(f)]
        if not files:
            literal = re.sub(r"[\[\]]", lambda m: f"[{m.group()}]", path)  # its brackets as the characters themselves
            if "[" in path and any(os.path.isfile(f) for f in glob.glob(literal, recursive=True)):
                raise UserError(f"{flag} '{path}' matches no file: '[' and ']' are pattern characters, and a name "
                                f"here holds them; to match them as written, put each in brackets: '{literal}'.")
            fixed = os.path.dirname(path)  # the folder the pattern's first wildcard is in
            while glob.has_magic(fixed):
                fixed = os.path.dirname(fixed)
            shut = unreachable(fixed or os.curdir)
            if shut:
                raise UserError(f"{flag} '{path}' matches no file that can be seen: the folder '{fixed or os.curdir}' "
                                f"{shut.replace('be read', 'be listed')}; fix its permissions, or run as a user who "
                                f"may read it.")
            raise UserError(f"{flag} '{path}' matches no file; check the pattern (quote it, so the shell does not "
                            f"expand it first).")
    elif os.path.isdir(path):
        raise UserError(f"{flag} '{path}' is a folder; pass one file, or a quoted pattern of the files of this "
                        f"split, e.g. '{os.path.join(path, 'train-*.parquet')}'.")
    else:
        files = [path]
    for f in files:
        ext = os.path.splitext(f)[1].lower()
        if ext not in FILE_EXTENSIONS:
            what = f"'{path}' has" if f == path else f"'{path}' matches '{f}', which has"
            raise UserError(f"{flag} {what} an unsupported extension '{ext}'; use one of {', '.join(FILE_EXTENSIONS)}"
                            f"{'' if f == path else ' (narrow the pattern)'}.")
    if not os.path.isfile(files[0]):
        check_link(files[0], flag, "file")
        check_readable(files[0], flag)
        if os.path.exists(files[0]):  # a pipe (<(...)), a device: the run hashes a data file and datasets reads it
            raise UserError(f"{flag} '{path}' is not a regular file (a pipe or a device); write the data to a file "
                            f"and pass that.")
        where = "" if os.path.isabs(path) else f" in {os.getcwd()}"  # (a YAML's relative paths are read from here)
        raise UserError(f"{flag} '{path}' does not exist{where}; check the path (a relative one is read from the "
                        f"current folder, also in a --config file)." if where else
                        f"{flag} '{path}' does not exist; check the path.")
    kinds = sorted({os.path.splitext(f)[1].lower() for f in files})
    if len(kinds) > 1:
        raise UserError(f"{flag} '{path}' matches files of {len(kinds)} formats ({', '.join(kinds)}); give the files "
                        f"of one format (narrow the pattern).")
    return files
