"""LoRA (PEFT, an optional extra): `--lora_r` wraps the model's linear layers (or --lora_target_modules) in
low-rank adapters and trains those and the classification head; best/ gets the adapters merged into plain
weights (`merged_state_dict`, from the gathered state under FSDP too), so `pipeline()` loads it without PEFT.
Refuses, in one line, a missing PEFT, target modules that name nothing or the head, and under FSDP a LoRA layer
other than a linear or embedding one (a convolution's, DoRA's: only PEFT merges those, from unsharded weights).
"""

import contextlib
import copy
import re
import warnings

import torch

from .errors import UserError, is_main_rank, listed, short


NO_PEFT = '--lora_r needs the PEFT library; install it with pip install -e ".[peft]" (or pip install peft).'


def check_lora(cfg):
    """True with --lora_r (and PEFT installed), False without it."""
    if not cfg.lora_r:
        return False
    try:
        import peft  # noqa: F401
    except ImportError:
        raise UserError(NO_PEFT) from None
    return True


def peft_installed():
    """Whether PEFT can be imported, without importing it (5 s): the config's check, before any data is read."""
    import importlib.util
    import sys

    if "peft" in sys.modules:
        return sys.modules["peft"] is not None
    try:
        return importlib.util.find_spec("peft") is not None
    except (ImportError, ValueError):
        return False


def target_names(value):
    """--lora_target_modules as the names it gives, in order ([]: left out, every linear layer of the body)."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    return [n.strip() for n in names if n.strip()]


def alpha(r, given):
    """--lora_alpha as the adapters are built with it: left out, twice the rank."""
    return given or 2 * r


def head_modules(model):
    """Names of the model's own top-level modules outside the pretrained body: the classification
    head (classifier, score, classification_head, sequence_summary + logits_proj, ...)."""
    prefix = model.base_model_prefix
    return [name for name, m in model.named_children()
            if name != prefix and any(True for _ in m.parameters())]


def linear_modules(model):
    """Full names of the linear layers in the model's body (nn.Linear and GPT-2's Conv1D); of a multimodal body (Gemma
    3's, LLaVA's: it holds a `language_model`) its language model's alone: a text never runs the vision tower, whose
    adapters would train nothing, count as trainable, and under DDP turn find_unused_parameters on."""
    from transformers.pytorch_utils import Conv1D

    prefix = model.base_model_prefix + "."
    if isinstance(getattr(getattr(model, model.base_model_prefix, None), "language_model", None), torch.nn.Module):
        prefix += "language_model."
    return [n for n, m in model.named_modules()
            if n.startswith(prefix) and isinstance(m, (torch.nn.Linear, Conv1D))]


def apply_lora(model, cfg, new=()):
    """Wrap `model` with LoRA adapters (--lora_target_modules, default every linear layer of the
    body); the head modules are trained in full (PEFT's modules_to_save), and so are the body's
    modules whose weights the checkpoint lacked (`new`: a BERT saved without its pooler): frozen,
    they would stay random under a low-rank update."""
    from peft import LoraConfig, TaskType, get_peft_model

    heads = head_modules(model)
    prefix = model.base_model_prefix + "."
    fresh = sorted({k.rsplit(".", 1)[0] for k in new if k.startswith(prefix)})
    if fresh:
        heads += fresh
        if is_main_rank():
            from .logs import say

            say(f"LoRA: {', '.join(fresh)} {'is' if len(fresh) == 1 else 'are'} not loaded from the checkpoint: trained in "
                f"full, like the head")
    given = target_names(cfg.lora_target_modules)
    if given and given != ["all-linear"]:  # PEFT's own name for what the default does (it would fail in a list)
        targets = given
        check_lora_targets(model, given, heads)
    else:
        names = [n for n in linear_modules(model) if not any(n == f or n.startswith(f + ".") for f in fresh)]
        if not names:
            raise UserError(f"{type(model).__name__} has no linear layers for LoRA; pass --lora_target_modules.")
        # a regex of exact names: the head's own linear layers (also called dense/out_proj) stay out
        targets = "(" + "|".join(re.escape(n) for n in names) + ")"
    for name in heads:  # trained in full: fp32 master weights even when the body is bf16 (--torch_dtype)
        model.get_submodule(name).float()
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=alpha(cfg.lora_r, cfg.lora_alpha),
                        lora_dropout=cfg.lora_dropout, target_modules=targets, modules_to_save=heads)
    try:
        with warnings.catch_warnings(), own_targets(model, config):
            # PEFT asks transformers 5 a deprecated name: not the user's to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            # GPT-2's Conv1D holds its weight transposed: PEFT sets fan_in_fan_out for it, and says so every run
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False but the target module is")
            return get_peft_model(model, config)
    except ValueError as e:
        what = f"--lora_target_modules {cfg.lora_target_modules}" if given else "LoRA on the body's linear layers"
        raise UserError(f"{what}: {short(e)}") from e


@contextlib.contextmanager
def own_targets(model, config):
    """get_peft_model with `config`'s targets as they are: names of this model's modules.

    PEFT rewrites the config of an MoE model whose experts transformers 5 fused into stacked parameters, for an
    adapter trained on transformers 4, where the experts were linear layers: every target ending in gate_proj,
    up_proj or down_proj moves to the routed experts' parameters, a shared expert's and a dense layer's linear
    layers included (peft#3711, open in PEFT 0.21). Those lost their adapters, PEFT's parameter LoRA refused
    --lora_dropout, and best/ could not merge it (DeepSeek-V3, Qwen3-Next, GLM-4-MoE). Our targets are
    already this model's own names, so the rewrite is skipped while the adapter is built; the routed experts, not
    linear layers, are left out as the router is. PEFT still rewrites best/adapter/'s config when it loads it:
    said here, once (best/ itself holds the merged weights and needs no PEFT)."""
    try:
        from peft.utils import transformers_weight_conversion as conversion
        rewrite = conversion.convert_peft_config_for_transformers
    except (ImportError, AttributeError):  # a PEFT without the rewrite
        yield
        return
    probe = copy.deepcopy(config)
    rewrite(probe, model=model, conversions=None)
    if getattr(probe, "target_parameters", None) and is_main_rank():
        from .logs import say

        say(f"LoRA: adapters on the linear layers, where PEFT would move those of the MLPs onto "
            f"{type(model).__name__}'s routed experts (peft#3711); best/ is merged and needs no PEFT, best/adapter/ "
            f"loads right only in a PEFT that fixed it.")
    conversion.convert_peft_config_for_transformers = lambda *args, **kwargs: None
    try:
        yield
    finally:
        conversion.convert_peft_config_for_transformers = rewrite


def check_lora_targets(model, targets, heads):
    """Each --lora_target_modules name must name modules of the body, as PEFT matches a name (the module's full
    name, or its last parts); PEFT itself fails only when no name matches, so `q_proj,v_prj` trained q_proj alone
    without a word, and a head's name failed as 'no modules were targeted'."""
    prefix = model.base_model_prefix + "."
    names = [n for n, _ in model.named_modules() if n]

    def matches(t, where):
        return [n for n in where if n == t or n.endswith("." + t)]

    head = [n for n in names if any(n == h or n.startswith(h + ".") for h in heads)]
    body = [n for n in names if n.startswith(prefix) and n not in head]  # (less a module the checkpoint lacked)
    linear = sorted({n.rsplit(".", 1)[-1] for n in linear_modules(model)})
    if "all-linear" in targets:  # PEFT's name for every linear layer: in a list it fails as a module's name
        raise UserError(f"--lora_target_modules all-linear means every linear layer and stands alone; give it by itself "
                        f"(the default), or name layers: {listed(linear, 12)}.")
    for t in targets:
        found = matches(t, body)
        other = [n for n in found if not isinstance(model.get_submodule(n), adaptable())]
        if found and not other:
            continue
        if other:  # PEFT's refusal was the module's repr, hundreds of lines
            kind = type(model.get_submodule(other[0])).__name__
            raise UserError(f"--lora_target_modules {t} names {other[0]} ({kind}"
                            f"{f', and {len(other) - 1} more' if len(other) > 1 else ''}), which LoRA does not adapt; "
                            f"name linear layers: {listed(linear, 12)} (or leave the option out: all of them).")
        if matches(t, head):
            raise UserError(f"--lora_target_modules {t} names the classification head ({', '.join(heads)}), which is "
                            f"trained in full already; name layers of the body: {listed(linear, 12)}.")
        raise UserError(f"--lora_target_modules {t} names no module of {type(model).__name__}; its linear layers "
                        f"are {listed(linear, 12)} (or leave the option out: all of them).")


def adaptable():
    """The kinds of module PEFT's LoRA adapts (quantized linear layers are torch's Linear too; transformers' Conv1D
    is GPT-2's linear layer)."""
    from transformers.pytorch_utils import Conv1D

    nn = torch.nn
    return nn.Linear, Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention


def is_peft(model):
    """Whether `model` is PEFT's. Looked up, not imported: a run without --lora_r never imports PEFT (5 s, and an
    installed PEFT that fails to import would end it), and a PeftModel exists only where PEFT was imported."""
    import sys

    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def merged_state_dict(model, state_dict):
    """The state dict of a plain transformers model equal to LoRA `model` with its adapter merged.

    `state_dict` is the gathered state of the PEFT model (accelerator.get_state_dict), and the
    deltas are computed from it, on the main process alone: under FSDP the layers' own
    parameters are shards, and asking PEFT for a delta there is a collective that the other
    ranks never join (a hang). PEFT's layers still give the scaling and the fan-in/fan-out
    orientation (GPT-2's Conv1D). The model is not changed.

    One layer at a time: its delta is made where its factors are, and the merged weight goes to
    the CPU (save_pretrained writes from there anyway). Every delta and merged weight at once, on
    the GPU beside the model and optimizer state, was twice the adapted weights: a 7B model's
    first best/ would not fit in 80 GB.
    """
    from peft.tuners.lora import LoraLayer

    layers = {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}

    def delta(name):
        module, total = layers[name], None
        for adapter in module.active_adapters:
            # an embedding layer keeps its factors in lora_embedding_A/B, and its lora_A is empty
            if adapter in module.lora_A or adapter in getattr(module, "lora_embedding_A", {}):
                d = lora_delta(name, module, adapter, state_dict)
                total = d if total is None else total + d
        return total

    out = {}
    body = "base_model.model."
    for key, value in state_dict.items():
        if "lora_" in key or ".original_module." in key:
            continue
        if ".base_layer." in key:
            owner = key.split(".base_layer.")[0]
            key = key.replace(".base_layer.", ".")
            d = delta(owner) if key.endswith(".weight") and owner in layers else None
            if d is not None:
                # summed in fp32 and rounded once: a bf16 body (--torch_dtype) keeps what it can of a small delta
                value = (value.detach().cpu().float() + d.to("cpu", torch.float32)).to(value.dtype)
                del d
        key = re.sub(r"\.modules_to_save\.[^.]+\.", ".", key)
        out[key[len(body):] if key.startswith(body) else key] = value
    return out


def lora_delta(name, module, adapter, state_dict):
    """B @ A x scaling of one LoRA layer, from whole tensors in `state_dict`: linear layers (A, B
    are `lora_A/B.<adapter>.weight`) and embeddings (`lora_embedding_A/B.<adapter>`, transposed).
    Other kinds (convolutions) ask PEFT, which needs the layer's own, unsharded weights; DoRA and other variants,
    and a bias on lora_B, are refused (DoRA's magnitude rescales the merged weight: PEFT's delta leaves it out)."""
    # a variant of LoRA (DoRA's magnitude: PEFT's delta leaves it out; audit65) or a bias on lora_B: not B @ A
    kinds = [kind for kind, on in (("use_dora", getattr(module, "use_dora", {}).get(adapter)),
                                   ("lora_bias", getattr(module, "lora_bias", {}).get(adapter)),
                                   ("a LoRA variant", getattr(module, "lora_variant", {}).get(adapter) is not None))
             if on]
    if kinds:
        raise UserError(f"the LoRA layer '{name}' has {kinds[0]}, which loop cannot merge into best/ (it merges "
                        f"B @ A x scaling); build the adapters without it.")
    scaling = module.scaling[adapter]
    a, b = (state_dict.get(f"{name}.lora_{x}.{adapter}.weight") for x in "AB")
    if a is not None and b is not None and a.dim() == 2:
        delta = (b.float() @ a.float()) * scaling
        return delta.T if getattr(module, "fan_in_fan_out", False) else delta
    a, b = (state_dict.get(f"{name}.lora_embedding_{x}.{adapter}") for x in "AB")
    if a is not None and b is not None:
        return (b.float() @ a.float()).T * scaling
    if any(hasattr(p, "to_local") for p in module.parameters()):  # sharded: PEFT's delta would be a collective
        raise UserError(f"cannot merge the LoRA layer '{name}' into best/ while the model is sharded (FSDP); "
                        f"leave it out of --lora_target_modules or train with DDP.")
    return module.get_delta_weight(adapter).detach()
