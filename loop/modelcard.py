"""best/README.md: the model card of the best model, as the Hub shows it (--push_to_hub uploads it).

YAML metadata the Hub reads (base model, datasets, pipeline tag, and `model-index` with the scores of
best/'s evaluation, so the model's page lists them), then what a reader needs to use and trust the
model: its labels, the scores, how to call it, the recipe it was trained with and the library versions.
Everything comes from the run itself (config, data, the evaluation best/ was chosen by); a local path
is named by its last part only, since a card may be published.
"""

import os
import re

from .splits import extra_sets

TASK = "text-classification"


def code(text):
    """`text` as Markdown inline code: a label holding backticks gets a longer fence (and spaces where it starts or
    ends with one), as CommonMark reads it."""
    text = str(text)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def is_hub_id(name):
    """A Hub repository id ('org/name' or 'name'), not a local path (or a pattern of files)."""
    import glob

    return bool(name) and not os.path.exists(name) and not name.startswith((".", "/", "~")) and name.count("/") <= 1 \
        and not glob.has_magic(name)


def named(path):
    """A Hub id as it is; a local path by its last part (a card may be published)."""
    return path if is_hub_id(path) else os.path.basename(os.path.normpath(path))


def data_source(cfg, data):
    """(Hub datasets for the metadata, {"eval"/"test": (dataset, config, split)} for the model-index, one
    phrase). Local files have no Hub dataset for the model-index to name: their scores are in the text only."""
    carved = f", {cfg.validation_split_percentage}% of it held out for evaluation" if data.carved else ""
    if cfg.train_file:  # local files, named by their last part only
        train = os.path.basename(cfg.train_file)
        evaluated = "" if data.carved else f", evaluated on `{os.path.basename(cfg.validation_file)}`"
        return [], {}, f"the local data `{train}`{carved}{evaluated}"
    name = named(cfg.dataset_name)
    config = f" ({cfg.dataset_config_name})" if cfg.dataset_config_name else ""
    split = f"{cfg.train_split} ({cfg.validation_split_percentage}% held out)" if data.carved else \
        (data.eval_split_name or "validation")
    phrase = f"`{name}`{config} (split `{cfg.train_split}`{carved})" + ("" if data.carved else f", evaluated on `{split}`")
    if not is_hub_id(cfg.dataset_name):  # a local dataset folder
        return [], {}, phrase
    scored = {"eval": (name, cfg.dataset_config_name, split), "test": (name, cfg.dataset_config_name, cfg.test_split),
              **{f"eval_{n}": (name, cfg.dataset_config_name, s) for n, kind, s in cfg.extra_evals() if kind == "split"}}
    return [name], scored, phrase


def parts(loop):
    """The scored splits' metric prefixes: eval, each extra evaluation set's eval_<name>, test."""
    return ["eval", *(f"eval_{n}" for n in extra_sets(loop.data)), "test"]


def scores_of(loop, metrics):
    """[(split, metric, value)] of best/'s eval_*, eval_<name>_* (extra evaluation sets) and test_* numbers:
    the run's metrics and loss (a variant's diagnostics of other weights, EMA's eval_raw_*, are not best/'s),
    sample counts apart."""
    own = set(loop.cfg.metric_list()) | set(getattr(loop, "own_metrics", None) or ()) | {loop.cfg.metric, "loss"}
    prefixes = sorted(parts(loop), key=len, reverse=True)  # eval_ood_accuracy is the 'ood' set's, not eval's
    out = []
    for k, v in metrics.items():
        part = next((p for p in prefixes if k.startswith(p + "_")), None)
        if part is not None and k[len(part) + 1:] in own and isinstance(v, (int, float)):
            out.append((part, k[len(part) + 1:], float(v)))
    return out


def picked_by(cfg):
    """'`accuracy`', or '`accuracy` on the evaluation set `ood`' for --metric ood_accuracy."""
    where, name = cfg.metric_source()
    return f"`{name}` on the evaluation set `{where}`" if where else f"`{name}`"


def render(loop, metrics):
    """The card's text for best/, whose evaluation gave `metrics` ({"epoch", "eval_*", "test_*"})."""
    from huggingface_hub import EvalResult, ModelCardData

    cfg, data, acc = loop.cfg, loop.data, loop.accelerator
    name = cfg.hub_model_id or os.path.basename(os.path.abspath(cfg.output_dir))
    base = None if cfg.from_scratch else cfg.model_name_or_path
    hub_datasets, scored, where = data_source(cfg, data)
    scores = scores_of(loop, metrics)
    results = [EvalResult(task_type=TASK, dataset_type=scored[part][0], dataset_name=scored[part][0],
                          dataset_config=scored[part][1], dataset_split=scored[part][2], metric_type=metric,
                          metric_value=value)
               for part, metric, value in scores if metric != "loss" and part in scored]
    meta = ModelCardData(library_name="transformers", pipeline_tag=TASK,
                         base_model=base if base and is_hub_id(base) else None, datasets=hub_datasets or None,
                         metrics=sorted({m for _, m, _ in scores if m != "loss"}) or None,
                         tags=["loop"] + (["lora"] if cfg.lora_r else []),
                         **({"model_name": name, "eval_results": results} if results else {}))
    model = cfg.model_name_or_path
    start = "trained from scratch (random weights) with the configuration of " if cfg.from_scratch else "fine-tuned from "
    start += f"[{model}](https://huggingface.co/{model})" if is_hub_id(model) else f"the local model `{named(model)}`"
    lines = ["---", meta.to_yaml(), "---", "", f"# {name}", "",
             f"A text classifier {start} on {where}, with `loop` (a hand-written Accelerate training loop). These "
             f"weights are those of its best evaluation by {picked_by(cfg)} (epoch {metrics.get('epoch')}, optimizer step "
             f"{loop.state.global_step}).", "", "## Scores", "", "| split | metric | value |", "|---|---|---|"]
    lines += [f"| {part} | {metric} | {value:.4f} |" for part, metric, value in scores]
    lines += [f"| {part} | examples | {metrics[f'{part}_samples']} |" for part in parts(loop)
              if f"{part}_samples" in metrics]
    extra = cfg.extra_evals()
    if extra:  # what each eval_<name> row scored (a local file by its last part)
        chose = cfg.metric_source()[0]
        lines += ["", "Extra evaluation sets, scored with these weights" + (
            f" (`eval_{chose}` chose them): " if chose else " but not used to choose them: ") + ", ".join(
            f"`eval_{n}`: {'split' if kind == 'split' else 'file'} `{s if kind == 'split' else os.path.basename(s)}`"
            for n, kind, s in extra) + "."]
    labels = ", ".join(f"{i} {code(n)}" for i, n in enumerate(data.label_names))
    kind = "Regression: one output, the prediction itself" if loop.regression else \
        f"Multi-label: a sigmoid per label; {labels}" if loop.multi_label else f"Single-label: {labels}"
    lines += ["", "## Labels", "", kind + ".", ""]
    example = '{"text": "A question?", "text_pair": "An answer."}' if cfg.text_pair_column else \
        '"This film was a pleasure from start to finish."'
    example += ", top_k=None" if loop.multi_label else ""  # every label's sigmoid, not the top one alone
    cut = "start" if getattr(loop.tokenizer, "truncation_side", "right") == "left" else "end"
    lines += ["## Use", "", "```python", "from transformers import pipeline", "",
              use_line(cfg.hub_model_id),
              f"classify({example}, truncation=True)", "```", "",
              (f"A pair longer than {loop.max_length} tokens is cut at the {cut} of its longer text" if cfg.text_pair_column
               else f"A text longer than {loop.max_length} tokens is cut at its {cut}")
              + ", as in training (the saved tokenizer keeps the side).", ""]
    from .models import scored_otherwise_alone

    model = getattr(loop, "model", None)
    kind = scored_otherwise_alone(model) if model is not None else None
    if kind:  # (the loop's evaluation and predict.py mend it: the card's numbers are theirs)
        lines += [f"transformers' `pipeline()` scores a {kind} model's text otherwise alone than in a padded batch; "
                  f"`loop.models.scored_alike(classify.model)` (from the `loop` package that trained it) scores it "
                  f"as training did.", ""]
    from .core import Loop

    train = getattr(data, "train", None)
    recipe = {"training examples": len(train) if train is not None else None,
              "max_train_samples": cfg.max_train_samples,
              "epochs": f"{cfg.num_train_epochs:g}" if not cfg.max_steps else None,
              "learning_rate": cfg.learning_rate, "per_device_train_batch_size": cfg.per_device_train_batch_size,
              "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "processes": acc.num_processes,
              "examples per optimizer step": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
              * acc.num_processes,
              "optimizer": "AdamW" if type(loop).build_optimizer is Loop.build_optimizer else
              f"{type(loop).__name__}.build_optimizer", "weight_decay": cfg.weight_decay,
              "lr_scheduler_type": cfg.lr_scheduler_type, "warmup steps": cfg.num_warmup_steps(loop.max_steps),
              "optimizer steps": loop.max_steps, "max_length": loop.max_length, "mixed_precision": acc.mixed_precision,
              "seed": cfg.seed, "data_seed": cfg.data_seed, "lora_r": cfg.lora_r, "class_weights": cfg.class_weights,
              "label_smoothing_factor": cfg.label_smoothing_factor or None, "weight_column": cfg.weight_column,
              "variant": type(loop).__name__ if type(loop) is not Loop else None}
    lines += ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in recipe.items() if v is not None]
    lines += ["", "Every option of the run (these and the rest), the library versions and the sha256 of each data file "
                  "are in `training_args.json` beside this card."]
    lines += ["", "## Framework versions", ""] + [f"- {lib} {version}" for lib, version in versions(bool(cfg.lora_r))]
    lines.append("")
    return "\n".join(lines)


def retarget(text, name, hub_id):
    """A card render() wrote, made to name the model `name` (title, model-index) and to load it from `hub_id` in its
    Use section (a local path without one), as render() does: a finished run given --push_to_hub or another
    --hub_model_id pushes best/ as it is, whose card named the output folder when it trained. The scores and the
    recipe are the training run's and stay. None when `text` is not such a card (a variant's own)."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=True)
    except Exception:  # noqa: BLE001 (no front matter, or YAML huggingface_hub cannot read)
        return None
    if "loop" not in (card.data.tags or []):
        return None
    if card.data.model_name:
        card.data.model_name = name
    body = re.sub(r"^# .*$", lambda _: f"# {name}", card.text, count=1, flags=re.M)
    card.text = re.sub(r'^classify = pipeline\("[^"]*", model="[^"]*"\).*$', lambda _: use_line(hub_id), body,
                       count=1, flags=re.M)
    return str(card)


def use_line(hub_id):
    """The card's pipeline() line: the Hub repository, or (a card not pushed) a placeholder said to be one."""
    if hub_id:
        return f'classify = pipeline("{TASK}", model="{hub_id}")'
    return f'classify = pipeline("{TASK}", model="path/to/best")  # the folder holding this card'


def versions(lora=False):
    """(library, version) of what trained the model: loop itself, then the libraries (peft for LoRA)."""
    import sys

    from .version import __version__

    libraries = ("transformers", "torch", "accelerate", "datasets") + (("peft",) if lora else ())
    return [("loop", __version__)] + [(lib, sys.modules[lib].__version__) for lib in libraries
                                      if lib in sys.modules and hasattr(sys.modules[lib], "__version__")]


def write(loop, path, metrics):
    """best/README.md in the folder being built (`path`); a variant's write_best_extras may replace it. A card
    that cannot be made (a huggingface_hub that rejects a field) is warned about and left out: best/ is whole
    without it. A full disk is the caller's (OSError)."""
    try:
        text = render(loop, metrics)
    except Exception as e:  # noqa: BLE001
        from .errors import short

        loop.warn(f"best/README.md (the model card) was not written ({short(e)}); best/ is complete without it.")
        return
    with open(os.path.join(path, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)
