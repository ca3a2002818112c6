"""Models: tokenizer, model config and the classification model, ready for the loop.

Owns: loading the config and tokenizer (Hub id or folder), the max-length rule, labels into the
config, `--config_overrides`, the attention kernel, fp32 master weights, gradient checkpointing
and `torch.compile`. Does not own: the optimizer, distribution (`accelerator.prepare` in the
loop) or saving (`checkpoint.py`).

Every function takes the config and what it needs, and returns a plain transformers object, so
`Loop.build_model()` and friends stay one line and a variant can call them with other arguments.
"""

import os
import warnings

import torch

from .errors import UserError, is_main_rank, short


def load_config(cfg):
    """The model's `PretrainedConfig` from --model_name_or_path, or one `error:` line."""
    from transformers import AutoConfig

    name = cfg.model_name_or_path
    try:
        return AutoConfig.from_pretrained(name)
    except Exception as e:
        where = "is not a local folder and could not be fetched from the Hugging Face Hub" if not os.path.isdir(name) \
            else "is a folder without a usable config.json"
        raise UserError(f"model '{name}' {where} ({short(e)}); pass a local model folder with "
                        f"--model_name_or_path (offline, set HF_HUB_OFFLINE=1).") from e


def load_tokenizer(cfg):
    """The tokenizer of --tokenizer_name, else of the model."""
    from transformers import AutoTokenizer

    name = cfg.tokenizer_name or cfg.model_name_or_path
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise UserError(f"could not load a tokenizer from '{name}' ({short(e)}); pass a folder with tokenizer "
                        f"files via --tokenizer_name.") from e


def max_length(cfg, model_config, tokenizer):
    """--max_length, or the model's position limit capped at 512; never above the limit."""
    limits = [n for n in (getattr(model_config, "max_position_embeddings", None), tokenizer.model_max_length)
              if n and n < 1_000_000]
    limit = min(limits) if limits else 512
    if cfg.max_length is None:
        return min(limit, 512)
    if cfg.max_length > limit:
        if is_main_rank():
            warnings.warn(f"--max_length {cfg.max_length} is above the model's limit of {limit} positions; "
                          f"using {limit}.", stacklevel=2)
        return limit
    return cfg.max_length


def configure(cfg, config, label_names):
    """Put our labels and --config_overrides into the model config (in place)."""
    head = getattr(config, "num_labels", None)
    archs = getattr(config, "architectures", None) or []
    if any("SequenceClassification" in a for a in archs) and head not in (None, len(label_names)) \
            and not cfg.from_scratch:
        raise UserError(f"the model's classification head has {head} labels but the data has {len(label_names)} "
                        f"({', '.join(label_names)}); use a base model or one trained on the same labels.")
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {n: i for i, n in enumerate(label_names)}
    for key, value in cfg.overrides_dict().items():
        if not hasattr(config, key):
            raise UserError(f"--config_overrides key '{key}' is not a field of {type(config).__name__}.")
        old = getattr(config, key)
        try:
            setattr(config, key, type(old)(value) if old is not None and not isinstance(old, bool)
                    else value.lower() in ("1", "true") if isinstance(old, bool) else value)
        except ValueError:
            raise UserError(f"--config_overrides {key}={value}: expected a {type(old).__name__}.")
    return config


def build_model(cfg, config, label_names):
    """AutoModelForSequenceClassification in fp32 (master weights), labels in its config."""
    from transformers import AutoModelForSequenceClassification

    config = configure(cfg, config, label_names)
    kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    try:
        if cfg.from_scratch:
            model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32, **kwargs)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.model_name_or_path, config=config, dtype=torch.float32, **kwargs)
    except Exception as e:
        if isinstance(e, (ValueError, ImportError)) and ("attn_implementation" in str(e) or "attention" in str(e).lower()):
            raise UserError(f"--attn_implementation {cfg.attn_implementation} is not supported here ({short(e)}); "
                            f"try sdpa or eager.") from e
        if cfg.from_scratch:
            raise
        # damaged or truncated weight files (SafetensorError, OSError, RuntimeError from torch.load)
        raise UserError(f"could not load the weights of --model_name_or_path '{cfg.model_name_or_path}' ({short(e)}); "
                        f"check or re-download its weight files.") from e
    # Mixed precision autocasts the forward pass; the weights the optimizer updates stay fp32,
    # even when the checkpoint was stored in fp16/bf16 (from_pretrained keeps its dtype).
    model = model.float()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.torch_compile:
        model = torch.compile(model)
    return model
