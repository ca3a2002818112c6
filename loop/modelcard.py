"""best/README.md: the model card of the best model, as the Hub shows it (--push_to_hub uploads it).

YAML metadata the Hub reads (base model, datasets, pipeline tag, and `model-index` with the scores of
best/'s evaluation, so the model's page lists them), then what a reader needs to use and trust the
model: its labels, the scores, how to call it, the recipe it was trained with and the library versions.
Everything comes from the run itself (config, data, the evaluation best/ was chosen by); a local path
is named by its last part only, since a card may be published.
"""

import os

TASK = "text-classification"


def is_hub_id(name):
    """A Hub repository id ('org/name' or 'name'), not a local path."""
    return bool(name) and not os.path.exists(name) and not name.startswith((".", "/", "~")) and name.count("/") <= 1


def named(path):
    """A Hub id as it is; a local path by its last part (a card may be published)."""
    return path if is_hub_id(path) else os.path.basename(os.path.normpath(path))


def data_source(cfg, data):
    """(Hub datasets for the metadata, {"eval"/"test": (dataset name, split)} of the scores, one phrase)."""
    carved = f", {cfg.validation_split_percentage}% of it carved for evaluation" if data.carved else ""
    if cfg.train_file:
        train = named(cfg.train_file)
        scored = {"eval": (train, "validation") if data.carved else (named(cfg.validation_file), "validation")}
        if cfg.test_file:
            scored["test"] = (named(cfg.test_file), "test")
        return [], scored, f"the local data `{train}`{carved}" + \
            ("" if data.carved else f", evaluated on `{named(cfg.validation_file)}`")
    name = named(cfg.dataset_name)
    split = "validation" if data.carved else (data.eval_split_name or "validation")
    scored = {"eval": (name, split), "test": (name, cfg.test_split or "test")}
    config = f" ({cfg.dataset_config_name})" if cfg.dataset_config_name else ""
    return ([name] if is_hub_id(cfg.dataset_name) else []), scored, \
        f"`{name}`{config} (split `{cfg.train_split}`{carved})" + ("" if data.carved else f", evaluated on `{split}`")


def scores_of(metrics):
    """[(split, metric, value)] of a best/ record's eval_* and test_* numbers (sample counts apart)."""
    return [(*k.split("_", 1), float(v)) for k, v in metrics.items()
            if k.startswith(("eval_", "test_")) and not k.endswith("_samples") and isinstance(v, (int, float))]


def render(loop, metrics):
    """The card's text for best/, whose evaluation gave `metrics` ({"epoch", "eval_*", "test_*"})."""
    from huggingface_hub import EvalResult, ModelCardData

    cfg, data, acc = loop.cfg, loop.data, loop.accelerator
    name = cfg.hub_model_id or os.path.basename(os.path.abspath(cfg.output_dir))
    base = None if cfg.from_scratch else cfg.model_name_or_path
    hub_datasets, scored, where = data_source(cfg, data)
    scores = scores_of(metrics)
    results = [EvalResult(task_type=TASK, dataset_type=scored[part][0], dataset_name=scored[part][0],
                          dataset_split=scored[part][1], metric_type=metric, metric_value=value)
               for part, metric, value in scores if metric != "loss" and part in scored]
    meta = ModelCardData(library_name="transformers", pipeline_tag=TASK,
                         base_model=base if base and is_hub_id(base) else None, datasets=hub_datasets or None,
                         metrics=sorted({r.metric_type for r in results}) or None,
                         tags=["loop"] + (["lora"] if cfg.lora_r else []), model_name=name, eval_results=results or None)
    start = "trained from scratch (random weights) with the configuration of " if cfg.from_scratch else "fine-tuned from "
    start += f"[{base}](https://huggingface.co/{base})" if base and is_hub_id(base) else \
        f"the local model `{named(cfg.model_name_or_path)}`"
    lines = ["---", meta.to_yaml(), "---", "", f"# {name}", "",
             f"A text classifier {start} on {where}, with `loop` (a hand-written Accelerate training loop). These "
             f"weights are those of its best evaluation by `{cfg.metric}` (epoch {metrics.get('epoch')}, optimizer step "
             f"{loop.state.global_step}).", "", "## Scores", "", "| split | metric | value |", "|---|---|---|"]
    lines += [f"| {part} | {metric} | {value:.4f} |" for part, metric, value in scores]
    lines += [f"| {part} | examples | {metrics[f'{part}_samples']} |" for part in ("eval", "test")
              if f"{part}_samples" in metrics]
    labels = ", ".join(f"{i} `{n}`" for i, n in enumerate(data.label_names))
    kind = "Regression: one output, the prediction itself" if loop.regression else \
        f"Multi-label: a sigmoid per label; {labels}" if loop.multi_label else f"Single-label: {labels}"
    lines += ["", "## Labels", "", kind + ".", ""]
    example = '{"text": "A question?", "text_pair": "An answer."}' if cfg.text_pair_column else \
        '"This film was a pleasure from start to finish."'
    cut = "start" if getattr(loop.tokenizer, "truncation_side", "right") == "left" else "end"
    lines += ["## Use", "", "```python", "from transformers import pipeline", "",
              f'classify = pipeline("{TASK}", model="{cfg.hub_model_id or "path/to/best"}")',
              f"classify({example}, truncation=True)", "```", "",
              f"A text longer than {loop.max_length} tokens is cut at its {cut}, as in training (the saved tokenizer "
              f"keeps the side).", ""]
    from .core import Loop

    recipe = {"learning_rate": cfg.learning_rate, "per_device_train_batch_size": cfg.per_device_train_batch_size,
              "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "processes": acc.num_processes,
              "examples per optimizer step": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
              * acc.num_processes,
              "optimizer": "AdamW" if type(loop).build_optimizer is Loop.build_optimizer else
              f"{type(loop).__name__}.build_optimizer", "weight_decay": cfg.weight_decay,
              "lr_scheduler_type": cfg.lr_scheduler_type, "warmup steps": cfg.num_warmup_steps(loop.max_steps),
              "optimizer steps": loop.max_steps, "max_length": loop.max_length, "mixed_precision": acc.mixed_precision,
              "seed": cfg.seed, "lora_r": cfg.lora_r, "class_weights": cfg.class_weights,
              "label_smoothing_factor": cfg.label_smoothing_factor or None, "weight_column": cfg.weight_column,
              "variant": type(loop).__name__ if type(loop) is not Loop else None}
    lines += ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in recipe.items() if v is not None]
    lines += ["", "## Framework versions", ""] + [f"- {lib} {version}" for lib, version in versions(bool(cfg.lora_r))]
    lines.append("")
    return "\n".join(lines)


def versions(lora=False):
    """(library, version) of what trained the model (peft for LoRA)."""
    import sys

    libraries = ("transformers", "torch", "accelerate", "datasets") + (("peft",) if lora else ())
    return [(lib, sys.modules[lib].__version__) for lib in libraries
            if lib in sys.modules and hasattr(sys.modules[lib], "__version__")]


def write(loop, path, metrics):
    """best/README.md in the folder being built (`path`); a variant's write_best_extras may replace it."""
    with open(os.path.join(path, "README.md"), "w", encoding="utf-8") as f:
        f.write(render(loop, metrics))
