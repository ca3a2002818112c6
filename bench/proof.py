"""GPU proofs beyond speed-vs-Trainer: FSDP resume, torch.compile, a ~0.5B decoder (full vs LoRA).

    python bench/proof.py fsdp --smoke       # CPU: FSDP2 on 2 gloo processes, tiny model, synthetic data
    python bench/proof.py compile --smoke    # CPU: tiny DistilBERT, eager vs compiled vs CUDA-graph mode
    python bench/proof.py decoder --smoke    # CPU: tiny Qwen2-shaped decoder (a Llama config), full vs LoRA
    bash bench/gpu.sh fsdp|compile|decoder   # the GPU runs (see bench/README.md)

Parts:
  fsdp     loop/train.py through a real launcher, twice on the same data: uninterrupted, and stopped by
           SIGTERM after step --stop_at_step (tests/fault_train.py) then `--resume_from_checkpoint latest`.
           Reports both runs' evaluations, the max abs difference of the two best/ weights (and whether
           they are bit-identical), wall times, and pipeline("text-classification") on best/.
           GPU: accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1;
           CPU: torchrun --nproc_per_node 2 with LOOP_TEST_FSDP_ON_CPU=1 (accelerate enables FSDP on GPUs only).
  compile  our loop with --torch_compile false, then true, then --torch_compile_mode reduce-overhead
           (CUDA graphs) (DistilBERT config, random weights): train
           samples/s over a window after --warmup_steps, the first optimizer step's time (the compile
           cost) and the distinct padded shapes seen.
  decoder  a Qwen2-0.5B-shaped decoder built from a Llama config (random weights; vocab sized to the tokenizer
           carried), full fine-tuning vs --lora_r 16 (and, under bf16, LoRA with the frozen body in bf16,
           --torch_dtype bfloat16): samples/s, peak memory, the weights' memory, trainable parameters.
           The tokenizer is saved WITHOUT a pad token, as decoder LMs ship, so the loop's pad handling runs.

Each part prints one JSON line on stdout; progress goes to stderr. compile and decoder run each
variant in its own child process (`--worker`), so peak memory and compile caches are its own.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import throughput  # noqa: E402  (its timing window and DistilBERT sizes)

ROOT = common.ROOT
FAULTS = os.path.join(ROOT, "tests", "fault_train.py")
FSDP_CONFIG = os.path.join(ROOT, "configs", "accelerate", "fsdp.yaml")
TEXTS = ["A wonderful, moving film with a brilliant cast.", "Dull, clumsy and far too long; a waste of an evening."]

# Qwen2-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864); the vocabulary is the
# tokenizer's, not Qwen's 151,936: a 136M-parameter embedding would be mostly rows no text reaches.
DECODER_SIZES = {
    "qwen2-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                       intermediate_size=4864),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["fsdp", "compile", "decoder"])
    p.add_argument("--smoke", action="store_true", help="CPU-sized defaults: tiny model, synthetic data unless files are given")
    p.add_argument("--train_file", help="training texts (parquet/csv/json with text,label); default: synthetic reviews")
    p.add_argument("--test_file", help="evaluation texts; default: synthetic reviews")
    p.add_argument("--tokenizer", help="tokenizer folder (compile, decoder); default: the synthetic word-level one")
    p.add_argument("--model", help="fsdp: a model folder to fine-tune (bench/gpu.sh: MiniLM); default: a "
                                   "DistilBERT config with random weights")
    p.add_argument("--model_size", help="compile: a throughput.py DistilBERT size (tiny, small, distilbert); "
                                        "decoder: qwen2-0.5b or tiny; fsdp without --model: a DistilBERT size")
    p.add_argument("--max_train_samples", type=int)
    p.add_argument("--max_eval_samples", type=int)
    p.add_argument("--max_length", type=int)
    p.add_argument("--batch_size", type=int)
    p.add_argument("--warmup_steps", type=int, help="compile, decoder: optimizer steps before the timed window")
    p.add_argument("--steps", type=int, help="compile, decoder: optimizer steps timed")
    p.add_argument("--epochs", type=int, help="fsdp: epochs of each run")
    p.add_argument("--lr", type=float, help="fsdp: learning rate")
    p.add_argument("--checkpointing_steps", type=int, help="fsdp: checkpoint every N optimizer steps")
    p.add_argument("--stop_at_step", type=int, help="fsdp: SIGTERM after this optimizer step of the second run")
    p.add_argument("--lora_r", type=int, default=16, help="decoder: LoRA rank of the second variant")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 on a GPU that has it")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, help="CPU threads per process (OMP_NUM_THREADS)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result_file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if (args.train_file is None) != (args.test_file is None):
        p.error("give both --train_file and --test_file, or neither (synthetic data)")
    fill_defaults(args)
    if args.part in ("compile", "decoder") and not args.worker and args.max_train_samples < (args.warmup_steps + args.steps) * args.batch_size:
        p.error(f"--max_train_samples {args.max_train_samples} is less than (warmup_steps + steps) x batch_size: "
                f"the timed window must fit in one epoch")
    return args


def fill_defaults(args):
    """Unset flags get the GPU sizes, or the CPU smoke sizes with --smoke."""
    smoke = args.smoke
    d = {
        # GPU: 1,024 reviews x 2 epochs = 128 steps of 16; stopped at step 80, mid-way through epoch 2
        "fsdp": dict(model_size="tiny" if smoke else "distilbert", max_train_samples=192 if smoke else 1024, max_eval_samples=64 if smoke else 1000,
                     max_length=64 if smoke else 256, batch_size=8 if smoke else 16, epochs=2,
                     lr=1e-3 if smoke else 5e-5, checkpointing_steps=3 if smoke else 40,
                     stop_at_step=8 if smoke else 80),
        "compile": dict(model_size="tiny" if smoke else "distilbert", max_train_samples=160 if smoke else 3200,
                        max_eval_samples=16, max_length=None, batch_size=8 if smoke else 16,
                        warmup_steps=4 if smoke else 30, steps=8 if smoke else 150),
        "decoder": dict(model_size="tiny" if smoke else "qwen2-0.5b", max_train_samples=96 if smoke else 2000,
                        max_eval_samples=16, max_length=64 if smoke else 512, batch_size=8 if smoke else 16,
                        warmup_steps=2 if smoke else 10, steps=6 if smoke else 40),
    }[args.part]
    for key, value in d.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


versions = common.versions


def command_line(argv):
    return common.command_line("proof.py", argv)


def synthetic_data(tmp, n_train, n_eval):
    """Synthetic reviews as jsonl (integer labels); returns (train, test)."""
    from loop import synthetic

    paths = []
    for name, n, seed in (("train", n_train, 1), ("test", n_eval, 2)):
        path = os.path.join(tmp, f"{name}.jsonl")
        synthetic.write_jsonl(synthetic.make_rows(n, seed=seed, label_names=False), path)
        paths.append(path)
    return paths


def data_files(args, tmp):
    """The files the runs read: the given ones (the loop takes its own seeded subsets) or synthetic ones."""
    if args.train_file:
        return args.train_file, args.test_file
    return synthetic_data(tmp, args.max_train_samples, args.max_eval_samples)


# ================================================================ fsdp
def fsdp_prefix(gpu, bf16):
    """The real launcher: accelerate's FSDP config on one GPU, or torchrun with two CPU processes
    (a fresh rendezvous port per run); returns (command prefix, environment, training script)."""
    if gpu:
        return ([sys.executable, "-m", "accelerate.commands.launch", "--config_file", FSDP_CONFIG,
                 "--num_processes", "1", "--mixed_precision", "bf16" if bf16 else "no",
                 "--main_process_port", str(free_port())], {},
                os.path.join(ROOT, "loop", "train.py"))
    # accelerate turns FSDP on only for GPUs: tests/fault_train.py switches it on for gloo processes
    return ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())],
            {"ACCELERATE_USE_CPU": "true", "LOOP_TEST_FSDP_ON_CPU": "1"}, FAULTS)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCH_TAIL_CHARS = 8000  # of a launch's output, kept for the error messages (all of it goes to the log as it comes)


def launch(prefix, script, flags, extra_env, log_name):
    """Run one training process group in this process's folder (the relative paths in `flags` are the caller's);
    returns (returncode, wall seconds, the tail of its stdout+stderr, the command shown).

    Its output goes to our stderr as it comes (a launch cut off by the part's cap still leaves its log there, which
    capturing it until the exit lost); stopped (SIGTERM at the cap: make_tmp's SystemExit), the launcher gets SIGTERM
    (it passes it on to its ranks), then SIGKILL 5 s later."""
    import codecs

    cmd = prefix + [script] + flags
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env)
    shown = " ".join(f"{k}={v}" for k, v in extra_env.items())
    common.log(f"{log_name}: {shown} {' '.join(cmd)}")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    try:
        # chunks, not lines: a progress bar's carriage-return updates come through too
        for chunk in iter(lambda: os.read(proc.stdout.fileno(), 65536), b""):
            text = decode.decode(chunk)
            sys.stderr.write(text)
            sys.stderr.flush()
            tail = (tail + text)[-LAUNCH_TAIL_CHARS:]
        returncode = proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    finally:
        proc.stdout.close()
    wall = time.perf_counter() - start
    tail += decode.decode(b"", final=True)
    common.log(f"{log_name}: exit {returncode} after {wall:.1f}s")
    return returncode, wall, tail, (shown + " " + " ".join(cmd)).strip()


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def weight_diff(a, b):
    """(max abs difference, bit-identical) of two safetensors files with the same tensors."""
    import torch
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    if x.keys() != y.keys():
        raise SystemExit(f"best/ holds different tensors: {sorted(set(x) ^ set(y))[:5]}")
    diff = max((x[k].float() - y[k].float()).abs().max().item() for k in x)
    return diff, all(torch.equal(x[k], y[k]) for k in x)


def classify(best):
    """pipeline() on best/ with two texts: it loads alone and gives a label per text."""
    import torch
    from transformers import pipeline

    clf = pipeline("text-classification", model=best, device=0 if torch.cuda.is_available() else -1)
    return [{"text": t, **r} for t, r in zip(TEXTS, clf(TEXTS))]


def run_fsdp(args, argv):
    import torch

    gpu = torch.cuda.is_available()
    bf16 = {"auto": common.default_bf16(), "fp32": False, "bf16": True}[args.precision]
    tmp = common.make_tmp("bench_fsdp_")
    try:
        train, test = data_files(args, tmp)
        if args.model:
            model_flags = ["--model_name_or_path", args.model]
        else:
            model_dir = os.path.join(tmp, "model")
            throughput.make_model_dir(argparse.Namespace(tokenizer=args.tokenizer, model_size=args.model_size,
                                                         max_length=args.max_length), model_dir)
            model_flags = ["--model_name_or_path", model_dir, "--from_scratch", "true"]
        flags = model_flags + [
            "--train_file", train, "--validation_file", test, "--max_train_samples", args.max_train_samples,
            "--max_eval_samples", args.max_eval_samples, "--max_length", args.max_length,
            "--per_device_train_batch_size", args.batch_size, "--num_train_epochs", args.epochs,
            "--learning_rate", args.lr, "--checkpointing_steps", args.checkpointing_steps, "--logging_steps", 10,
            "--seed", args.seed]
        flags = [str(f) for f in flags]
        base, out = os.path.join(tmp, "uninterrupted"), os.path.join(tmp, "interrupted")

        prefix, env, script = fsdp_prefix(gpu, bf16)
        rc, wall_base, log_base, cmd_base = launch(prefix, script, flags + ["--output_dir", base], env, "uninterrupted")
        if rc != 0:
            raise SystemExit(f"the uninterrupted FSDP run failed (exit {rc}):\n{log_base[-3000:]}")
        stop_env = dict(env, LOOP_TEST_SIGNAL_AT_STEP=str(args.stop_at_step))
        prefix, env, script = fsdp_prefix(gpu, bf16)
        rc_stop, wall_stop, log_stop, cmd_stop = launch(prefix, FAULTS, flags + ["--output_dir", out], stop_env,
                                                        "interrupted")
        stopped_at = os.path.join(out, "checkpoints", f"step_{args.stop_at_step}")
        if rc_stop == 0 or not os.path.isdir(stopped_at):
            raise SystemExit(f"the interrupted run did not stop with a checkpoint at step {args.stop_at_step} "
                             f"(exit {rc_stop}):\n{log_stop[-3000:]}")
        prefix, env, script = fsdp_prefix(gpu, bf16)
        rc, wall_resume, log_resume, cmd_resume = launch(prefix, script,
            flags + ["--output_dir", out, "--resume_from_checkpoint", "latest"], env, "resumed")
        if rc != 0:
            raise SystemExit(f"the resumed FSDP run failed (exit {rc}):\n{log_resume[-3000:]}")

        diff, identical = weight_diff(os.path.join(out, "best", "model.safetensors"),
                                      os.path.join(base, "best", "model.safetensors"))
        evals = {name: [{k: r[k] for k in ("step", "eval_accuracy", "eval_loss") if k in r}
                        for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if "eval_samples" in r]
                 for name, d in (("uninterrupted", base), ("resumed", out))}
        losses = {name: [r["loss"] for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if "loss" in r]
                  for name, d in (("uninterrupted", base), ("resumed", out))}
        sharded = os.path.isdir(os.path.join(stopped_at, "pytorch_model_fsdp_0"))
        predictions = classify(os.path.join(base, "best"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    loss_diff = max((abs(a - b) for a, b in zip(losses["uninterrupted"], losses["resumed"])), default=None)
    return {
        "benchmark": "fsdp", **versions(), "command": command_line(argv),
        "launcher": "accelerate launch, configs/accelerate/fsdp.yaml, 1 GPU" if gpu else
                    "torchrun, 2 CPU processes (gloo), FSDP2 switched on by tests/fault_train.py",
        "precision": "bf16" if bf16 else "fp32",
        "model": args.model or f"DistilBERT {args.model_size} (random weights)",
        "data": args.train_file or "synthetic",
        "train_samples": args.max_train_samples, "eval_samples": args.max_eval_samples, "max_length": args.max_length,
        "batch_size": args.batch_size, "epochs": args.epochs, "checkpointing_steps": args.checkpointing_steps,
        "stopped_after_step": args.stop_at_step, "interrupted_exit_code": rc_stop,
        "checkpoint_sharded": sharded,
        "runs": {"uninterrupted": {"command": cmd_base, "wall_s": wall_base},
                 "interrupted": {"command": cmd_stop, "wall_s": wall_stop},
                 "resumed": {"command": cmd_resume, "wall_s": wall_resume}},
        "evals": evals,
        "evals_equal": evals["uninterrupted"] == evals["resumed"],
        "train_loss_logs": len(losses["uninterrupted"]),
        "train_loss_max_abs_diff": loss_diff,
        "best_max_abs_diff": diff,
        "best_bit_identical": identical,
        "pipeline": predictions,
    }


# ================================================================ compile and decoder: timed workers
def tokenizer_dir(model_dir):
    return model_dir + "_tokenizer"


def make_decoder_dir(args, path):
    """A decoder tokenizer (no pad token) + a Llama config of Qwen2-0.5B's shape sized to it (Qwen2's own config
    would make transformers load best/'s tokenizer as Qwen2Tokenizer, which the loop refuses at the start:
    models.check_reloads; the layers are the same but for Qwen2's q/k/v biases); returns the max length to use."""
    from transformers import AutoTokenizer, LlamaConfig

    from loop import synthetic

    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tok = synthetic.make_tokenizer(path)
    # Decoder LMs ship without a pad token and pad with eos: make [SEP] (the text's last token) the
    # eos and drop the pad token, so the loop picks the pad and the head must skip it by id.
    tok.eos_token, tok.bos_token = tok.sep_token, tok.cls_token
    tok.pad_token = None
    # In a folder of its own, passed as --tokenizer_name (as a user pairs a tokenizer with a config-built model)
    tok.save_pretrained(tokenizer_dir(path))
    vocab = 64 * math.ceil(len(tok) / 64)  # a multiple of 64 for the tensor cores
    LlamaConfig(**DECODER_SIZES[args.model_size], vocab_size=vocab, max_position_embeddings=4096,
                tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=None).save_pretrained(path)
    return min(args.max_length, tok.model_max_length, 512)


def run_timed(args, argv, variants, model_dir, max_length, bf16, tmp):
    """Each variant {name: TrainConfig overrides} in its own worker process; returns the JSON dict."""
    train, test = data_files(args, tmp)
    for name, over in variants.items():
        spec = dict(model_name_or_path=model_dir, from_scratch=True, train_file=train, validation_file=test,
                    max_length=max_length, per_device_train_batch_size=args.batch_size, seed=args.seed,
                    max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, num_train_epochs=1,
                    output_dir=os.path.join(tmp, f"out_{name}"), **over)
        common.write_result(os.path.join(tmp, f"spec_{name}.json"),
                            {"config": spec, "warmup": args.warmup_steps, "steps": args.steps})
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    def header():
        return {"benchmark": args.part, **versions(), "command": command_line(argv),
                "data": args.train_file or "synthetic", "train_samples": args.max_train_samples,
                "max_length": max_length, "batch_size": args.batch_size, "precision": "bf16" if bf16 else "fp32",
                "warmup_steps": args.warmup_steps, "timed_steps": args.steps}

    # The variants are independent: one that fails (compile's CUDA-graph mode, say, never run on a GPU before) is
    # recorded as {"error": ...} and the rest still run; one stopped (bench/gpu.sh's cap) ends the part, which
    # first prints the variants that finished, as throughput.py does.
    finished = {}
    try:
        for name in variants:
            try:
                common.run_workers(os.path.abspath(__file__), [args.part], [name], tmp, bf16, finished)
            except common.WorkerFailed as e:
                common.log(f"{e.code}: recorded, going on with the next variant (its traceback is above)")
                finished[name] = {"error": str(e.code)}
    except BaseException:
        if finished:
            print(json.dumps({**header(), "incomplete": True, "not_run": [v for v in variants if v not in finished],
                              **finished}), flush=True)
        raise
    out = {**header(), **finished}
    failed = [name for name in variants if "error" in finished[name]]
    if failed:
        out["failed"] = failed
    return out


def succeeded(out, *names):
    """Whether every variant named ran to its result (no "error")."""
    return all(name in out and "error" not in out[name] for name in names)


def run_compile(args, argv):
    bf16 = {"auto": common.default_bf16(), "fp32": False, "bf16": True}[args.precision]
    tmp = common.make_tmp("bench_compile_")
    try:
        model_dir = os.path.join(tmp, "model")
        max_length = throughput.make_model_dir(args, model_dir)
        # reduce-overhead: CUDA graphs (one per padded width, multiples of 64) take the host out of the step
        variants = {"eager": {"torch_compile": False}, "compiled": {"torch_compile": True},
                    "compiled_cuda_graphs": {"torch_compile_mode": "reduce-overhead"}}
        out = run_timed(args, argv, variants, model_dir, max_length, bf16, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ran = [out[name] for name in variants if succeeded(out, name)]
    out["model"] = (f"DistilBERT {args.model_size} ({ran[0]['parameters'] / 1e6:.1f}M parameters, random weights)"
                    if ran else f"DistilBERT {args.model_size} (random weights)")
    for name in ("compiled", "compiled_cuda_graphs"):
        if succeeded(out, name, "eager"):
            out[f"ratio_{name}_over_eager"] = {k: round(out[name][k] / out["eager"][k], 3)
                                               for k in ("train_samples_per_s", "train_tokens_per_s", "first_step_s")}
    return out


def run_decoder(args, argv):
    bf16 = {"auto": common.default_bf16(), "fp32": False, "bf16": True}[args.precision]
    tmp = common.make_tmp("bench_decoder_")
    try:
        model_dir = os.path.join(tmp, "model")
        max_length = make_decoder_dir(args, model_dir)
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
        tok = {"tokenizer_name": tokenizer_dir(model_dir)}
        variants = {"full": tok, "lora": {**tok, "lora_r": args.lora_r, "learning_rate": 2e-4}}
        if bf16:  # the frozen body in bf16 beside fp32 adapters (--torch_dtype): needs bf16 autocast
            variants["lora_bf16_body"] = {**variants["lora"], "torch_dtype": "bfloat16"}
        out = run_timed(args, argv, variants, model_dir, max_length, bf16, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shape = {k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                    "intermediate_size", "vocab_size")}
    size = f"{out['full']['parameters'] / 1e6:.1f}M parameters" if succeeded(out, "full") else "parameters"
    out["model"] = (f"Llama config of {args.model_size} shape, random weights, {size} with a "
                    f"{shape['vocab_size']}-token vocabulary")
    out["config"] = shape
    out["gradient_checkpointing"] = False
    keys = ("train_samples_per_s", "peak_memory_mb", "trainable_parameters", "weight_memory_mb")
    for name in ("lora", "lora_bf16_body"):
        if succeeded(out, name, "full"):
            out[f"ratio_{name}_over_full"] = {k: round(out[name][k] / out["full"][k], 3) for k in keys}
    return out


class Timer:
    """throughput.Window plus the first optimizer step's time and the padded shapes seen.

    The first step is timed from the first forward to the end of its optimizer step, between two
    device syncs: with torch.compile it holds the compilation of the forward and backward graphs.
    """

    def __init__(self, warmup, steps):
        self.window = throughput.Window(warmup, steps)
        self.first_start = self.first_step_s = None
        self.shapes = {"warmup": set(), "window": set()}
        self.compiled_frames = {}

    def before_step(self, completed, batch):
        if self.first_start is None:
            common.cuda_sync()
            self.first_start = time.perf_counter()
        self.window.count(completed, batch)
        phase = "warmup" if completed < self.window.warmup else "window"
        self.shapes[phase].add(tuple(batch["input_ids"].shape))

    def after_step(self, completed):
        if completed == 1:
            common.cuda_sync()
            self.first_step_s = time.perf_counter() - self.first_start
        if completed in (self.window.warmup, self.window.warmup + self.window.steps):
            # Dynamo's count of frames compiled so far: a rise inside the window means recompiles there.
            from torch._dynamo.utils import counters

            self.compiled_frames[completed] = counters["frames"]["ok"]
        return self.window.step_end(completed)

    def result(self):
        w = self.window
        frames = [self.compiled_frames.get(w.warmup, 0), self.compiled_frames.get(w.warmup + w.steps, 0)]
        return {**w.result(), "first_step_s": self.first_step_s,
                "padded_shapes_warmup": len(self.shapes["warmup"]),
                "padded_shapes_window": len(self.shapes["window"]),
                "padded_shapes_window_new": len(self.shapes["window"] - self.shapes["warmup"]),
                "compiled_frames_by_window_start": frames[0], "compiled_frames_in_window": frames[1] - frames[0]}


def worker(args):
    from loop import Loop, TrainConfig

    common.start_worker()
    with open(os.path.join(os.path.dirname(args.result_file), f"spec_{args.worker}.json")) as f:
        spec = json.load(f)
    timer = Timer(spec["warmup"], spec["steps"])

    class TimedLoop(Loop):
        def training_step(self, batch):
            timer.before_step(self.state.global_step, batch)
            return super().training_step(batch)

        def on_step_end(self):
            if timer.after_step(self.state.global_step):
                raise throughput.WindowDone

    common.reset_peak_memory()
    loop = TimedLoop(TrainConfig(**spec["config"]))
    setup_start = time.perf_counter()
    loop.setup()
    setup_s = time.perf_counter() - setup_start
    try:
        loop.train_loop(0)
    except throughput.WindowDone:
        pass
    timer.window.check_done()
    params = list(loop.model.parameters())
    result = {**timer.result(), "peak_memory_mb": common.peak_memory_mb(), "setup_s": setup_s,
              "parameters": sum(p.numel() for p in params),
              "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
              # the weights' own bytes (frozen and trained), without gradients, optimizer state or activations
              "weight_memory_mb": sum(p.numel() * p.element_size() for p in params) / 2**20,
              "frozen_weight_memory_mb": sum(p.numel() * p.element_size() for p in params if not p.requires_grad)
              / 2**20,
              "pad_token": loop.tokenizer.pad_token, "padding_side": loop.tokenizer.padding_side,
              "mixed_precision": loop.accelerator.mixed_precision,
              "config": {k: v for k, v in spec["config"].items() if k not in ("train_file", "validation_file",
                                                                               "output_dir", "model_name_or_path")}}
    common.finish_worker(args.result_file, result)


def main(argv=None):
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    run = {"fsdp": run_fsdp, "compile": run_compile, "decoder": run_decoder}[args.part]
    start = time.perf_counter()
    out = run(args, argv)
    out["wall_s"] = time.perf_counter() - start
    print(json.dumps(out), flush=True)
    if out.get("failed"):  # the JSON holds the others; the exit code says the part is not whole
        raise SystemExit(f"proof.py {args.part}: {', '.join(out['failed'])} failed (see the log above)")


if __name__ == "__main__":
    main()
