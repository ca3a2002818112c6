"""Unknown-option hints: what to write instead of an option loop does not have.

Owns: the Trainer names with no flag of that name here and what does their job (`TRAINER_OPTIONS`), the
Trainer options with no counterpart (`TRAINER_ONLY`), the shipped examples' own options (`EXAMPLE_OPTIONS`),
the nearest option's spelling (`option_hint`), and the unquoted file pattern the shell expanded
(`expanded_pattern_hint`, `shell_pattern`). Does not own: the options themselves or the refusal that
carries the hint (`config.py`: the parser and `TrainConfig`; `config_files.py`: a --config file's unknown
keys).
"""

import dataclasses
import difflib
import os
import re

# TrainingArguments names with no flag of that name here, and what does their job (README: Coming from Trainer);
# then other scripts' short names.
# Checked before the nearest-spelling guess: --save_steps is nearest --max_steps, which would train 100 steps.
TRAINER_OPTIONS = {
    "save_steps": "--checkpointing_steps N", "save_strategy": "--checkpointing_steps N or epoch",
    "eval_strategy": "--eval_steps N (epoch ends are always evaluated)",
    "evaluation_strategy": "--eval_steps N (epoch ends are always evaluated)",
    "metric_for_best_model": "--metric", "load_best_model_at_end": "nothing: best/ always holds the best evaluation",
    "bf16": "accelerate launch --mixed_precision bf16 (or ACCELERATE_MIXED_PRECISION=bf16 with python or torchrun)",
    "fp16": "accelerate launch --mixed_precision fp16 (or ACCELERATE_MIXED_PRECISION=fp16 with python or torchrun)",
    "mixed_precision": "accelerate launch --mixed_precision bf16 loop/train.py ... (before the script), or "
                       "ACCELERATE_MIXED_PRECISION=bf16 with python or torchrun",
    "fsdp": "accelerate config (FSDP)", "deepspeed": "accelerate config (DeepSpeed)",
    # run_glue's ModelArguments
    "cache_dir": "HF_HUB_CACHE (models) and HF_DATASETS_CACHE (datasets), or HF_HOME for both",
    "model_revision": "a local copy of that revision: --model_name_or_path <its snapshot folder> (`hf download NAME "
                      "--revision REV` prints it)",
    "batch_size": "--per_device_train_batch_size", "train_batch_size": "--per_device_train_batch_size",
    "eval_batch_size": "--per_device_eval_batch_size", "max_seq_length": "--max_length",
    "optim": "an override of build_optimizer (README: Write your own variant)",
    "do_train": "nothing: train.py trains",
    "do_eval": "nothing: training evaluates every epoch; --eval_only scores a trained model",
    "do_predict": "--test_file or --test_split (scored with best/)",
    "optim_args": "an override of build_optimizer (README: Write your own variant)",
    "local_rank": "nothing: the launcher (accelerate launch, torchrun) gives each process its rank",
    "use_cpu": "accelerate launch --cpu", "no_cuda": "accelerate launch --cpu", "fsdp_config": "accelerate config (FSDP)",
    "logging_strategy": "--logging_steps N", "save_safetensors": "nothing: best/ and checkpoints are always safetensors",
    "per_gpu_train_batch_size": "--per_device_train_batch_size", "per_gpu_eval_batch_size": "--per_device_eval_batch_size",
    # Trainer's own arguments (not TrainingArguments), as the README's table maps them
    "eval_dataset": "--validation_file (and --extra_eval_files NAME=FILE for more sets)",
    "train_dataset": "--train_file or --dataset_name", "compute_metrics": "--metrics, or an override of compute_metrics",
    "compute_loss_func": "an override of compute_loss (README: Write your own variant)",
    # other scripts' short names (--data is nearest --data_seed, --model names two options)
    "lr": "--learning_rate", "epochs": "--num_train_epochs", "max_epochs": "--num_train_epochs",
    "n_epochs": "--num_train_epochs", "model": "--model_name_or_path", "train_bs": "--per_device_train_batch_size",
    "eval_bs": "--per_device_eval_batch_size", "per_device_batch_size": "--per_device_train_batch_size",
    "max_samples": "--max_train_samples (and --max_eval_samples, --max_test_samples)",
    "use_lora": "--lora_r N (LoRA of rank N; 0, the default, trains every weight)", "lora": "--lora_r N",
    "peft": "--lora_r N (LoRA of rank N, with PEFT)",
    "model_name": "--model_name_or_path", "bs": "--per_device_train_batch_size",
    "data": "--train_file (a local file) or --dataset_name (the Hub)",
    "dataset": "--dataset_name (the Hub) or --train_file (a local file)",
}
# The other TrainingArguments (transformers 4 and 5) without a counterpart here: said so, not matched to the nearest
# spelling of ours, which would do something else (--eval_delay is not --eval_only, --length_column_name is not
# --weight_column, --eval_accumulation_steps is not --gradient_accumulation_steps).
TRAINER_ONLY = frozenset('''
    optim_target_modules average_tokens_across_devices bf16_full_eval fp16_full_eval activation_checkpointing
    activation_checkpointing_kwargs gradient_checkpointing_kwargs torch_compile_backend use_liger_kernel
    liger_kernel_config use_cache neftune_noise_alpha torch_empty_cache_steps log_on_each_node
    logging_nan_inf_filter include_num_input_tokens_seen log_level log_level_replica disable_tqdm project
    trackio_space_id trackio_bucket_id trackio_static_space_id eval_delay prediction_loss_only eval_do_concat_batches
    eval_use_gather_object eval_accumulation_steps include_for_metrics batch_eval_metrics save_only_model
    save_on_each_node enable_jit_checkpoint hub_token hub_private_repo hub_strategy hub_always_push hub_revision
    ignore_data_skip restore_callback_states_from_checkpoint accelerator_config parallelism_config
    dataloader_drop_last dataloader_pin_memory dataloader_persistent_workers dataloader_prefetch_factor
    dataloader_multiprocessing_context dataloader_in_order remove_unused_columns train_sampling_strategy
    length_column_name ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph ddp_backend skip_memory_metrics
    logging_dir use_mps_device fp16_opt_level fp16_backend half_precision_backend tpu_num_cores past_index
    sharded_ddp jit_mode_eval use_ipex ray_scope torchdynamo dispatch_batches split_batches
    include_tokens_per_second include_inputs_for_metrics mp_parameters tpu_metrics_debug push_to_hub_model_id
    push_to_hub_organization push_to_hub_token
'''.split())


# The shipped variants' own options (examples/*.py; tests/test_examples.py keeps this in step): given to
# loop/train.py, named as theirs, not matched to the nearest spelling of ours (--ema_decay is not --weight_decay).
EXAMPLE_OPTIONS = {"rdrop_alpha": "rdrop", "fgm_epsilon": "fgm", "llrd_decay": "llrd", "label_smoothing": "label_smoothing",
                   "ema_decay": "ema", "teacher": "distill", "distill_alpha": "distill", "distill_temperature": "distill"}


def expanded_pattern_hint(stray, args):
    """'--train_file was given 3 files (the shell expands an unquoted pattern); quote the pattern (e.g.
    --train_file 'd/train-*.jsonl') so the loop expands it' when the unrecognized argument `stray` is an existing
    file among files that follow a file option in `args` (an unquoted `--train_file d/train-*.jsonl`: the option
    took the first file, argparse refused the second); else ''. The pattern shown is the files' common start and
    end around a '*' (the shell's pattern may have been narrower)."""
    for i, arg in enumerate(args):
        if arg != stray or not os.path.isfile(arg):
            continue
        start = i
        while start > 0 and not args[start - 1].startswith("-") and os.path.isfile(args[start - 1]):
            start -= 1
        option = args[start - 1] if start > 0 else ""
        if start == i or not re.fullmatch(r"--\w+_files?", option):
            continue
        end = i
        while end + 1 < len(args) and not args[end + 1].startswith("-") and os.path.isfile(args[end + 1]):
            end += 1
        files = args[start:end + 1]
        head, tail = shell_pattern(files)
        # two files whose names share no start (train.csv test.csv) are more likely a forgotten --test_file than a
        # pattern ('t*.csv' would train on both); three or more, or names that share a start, are an expansion
        if len(files) == 2 and len(os.path.basename(head)) < 2:
            return ""
        return (f"{option} was given {len(files)} files (the shell expands an unquoted pattern); quote the "
                f"pattern (e.g. {option} '{head}*{tail}') so the loop expands it")
    return ""


def shell_pattern(files):
    """(start, end) of a pattern 'start*end' that matches each of `files`: their common start and end, with no
    character in both (the shell's pattern may have been narrower)."""
    head = os.path.commonprefix(files)
    tail = os.path.commonprefix([f[::-1] for f in files])[::-1]
    return head, tail[max(0, len(head) + len(tail) - min(map(len, files))):]


def option_hint(name, config_cls, yaml=False):
    """'for --save_steps use --checkpointing_steps N' or 'the nearest option is --max_steps' or '' (an unknown
    flag or YAML key): a Trainer name first, then the nearest spelling; hyphens read as underscores."""
    bare = name.lstrip("-").replace("-", "_")
    fields = [f.name for f in dataclasses.fields(config_cls)]
    shown = bare if yaml else "--" + bare
    if bare in TRAINER_OPTIONS and bare not in fields:
        use = TRAINER_OPTIONS[bare]
        return f"{shown} is not needed here ({use[9:]})" if use.startswith("nothing: ") else f"for {shown} use {use}"
    if bare in TRAINER_ONLY and bare not in fields:
        return f"{shown} is a Trainer option with no counterpart here (README: Coming from Trainer)"
    if yaml and bare in fields:  # learning-rate: the flag takes hyphens, a YAML key does not
        return f"write {name} as {bare}"
    if bare in EXAMPLE_OPTIONS and bare not in fields:  # not --lora_alpha for --rdrop_alpha
        script = f"examples/{EXAMPLE_OPTIONS[bare]}.py"
        built_in = next((f for f in fields if f.startswith(bare)), None)  # --label_smoothing_factor
        if built_in:
            return (f"for {shown} use {built_in if yaml else '--' + built_in} (built in), or run {script}, whose "
                    f"option it is")
        return f"{shown} is an option of {script}: run `python {script} ...` (or your variant) to use it"
    # words of options' names (--eval_batch: --per_device_eval_batch_size, not --eval_steps, the nearest spelling)
    def several(names):
        return f"options with '{bare}' in their name: {', '.join(names[:4])}" + (", ..." if len(names) > 4 else "")

    named = [f if yaml else "--" + f for f in fields if f"_{bare}_" in f"_{f}_"] if len(bare) > 2 else []
    if len(named) > 1:
        return several(named)
    close = named or [f if yaml else "--" + f for f in difflib.get_close_matches(bare, fields, n=1)]
    if not close and len(bare) > 2:  # a word cut short (--warm, --epoch): the options a word of whose name begins so
        begun = [f if yaml else "--" + f for f in fields if any(w.startswith(bare) for w in f.split("_"))]
        if len(begun) > 1:
            return several(begun)
        close = begun
    return f"the nearest option is {close[0]}" if close else ""
