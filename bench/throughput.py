"""Training and evaluation throughput: our loop vs transformers.Trainer, same model, data and batch.

    # CPU, no shared data: synthetic reviews, tiny DistilBERT (a smoke run, seconds)
    python bench/throughput.py
    # CPU, real IMDb text, a small DistilBERT, 2,000 reviews
    python bench/throughput.py --train_file ../shared/data/imdb/train.parquet \
        --test_file ../shared/data/imdb/test.parquet --tokenizer /tmp/minilm --model_size small
    # GPU: DistilBertConfig() (random weights), bf16 -- see bench/README.md

Both run the same DistilBERT config (random weights, same seed) on the same seeded subset, with
batch 16 and the same precision (bf16 on a GPU with bf16, else fp32). Ours runs with its
defaults (length-grouped batches, eval batch 64 sorted by length); Trainer runs the guide's
recipe (random batches, DataCollatorWithPadding, eval batch 16). Training is timed over
--steps optimizer steps after --warmup_steps; evaluation over one pass of the test subset.
Ours' window is then replayed through accelerate's own minimal loop on the same model ("bare_loop"):
"loop_overhead_ms_per_step" is what the loop's own work adds to a step, at most, its wait for the next
batch included (the replay's batches are in memory already; on a GPU, DataLoader workers prepare them ahead).
Prints one JSON line on stdout (progress goes to stderr).
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# DistilBERT sizes: "distilbert" is DistilBertConfig() itself (66M parameters).
SIZES = {
    "tiny": dict(n_layers=2, dim=64, hidden_dim=128, n_heads=2),
    "small": dict(n_layers=2, dim=256, hidden_dim=1024, n_heads=4),
    "distilbert": {},
}
KEYS = ("train_samples_per_s", "train_tokens_per_s", "padding_efficiency", "peak_memory_mb", "eval_samples_per_s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_file", help="training texts (parquet/csv/json with text,label); default: synthetic reviews")
    p.add_argument("--test_file", help="evaluation texts; default: synthetic reviews")
    p.add_argument("--tokenizer", help="tokenizer folder (e.g. all-MiniLM-L6-v2's bert-base-uncased vocab); "
                                       "default: the synthetic word-level tokenizer")
    p.add_argument("--model_size", choices=sorted(SIZES), help="DistilBERT size (default: distilbert on a GPU, "
                                                                "small with --tokenizer, else tiny)")
    p.add_argument("--max_train_samples", type=int, default=2000, help="seeded subset of the training file")
    p.add_argument("--max_eval_samples", type=int, default=500, help="seeded subset of the test file")
    p.add_argument("--max_length", type=int, default=None, help="truncation (default: the tokenizer's limit, at most 512)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--warmup_steps", type=int, default=10, help="optimizer steps before timing starts")
    p.add_argument("--steps", type=int, default=50, help="optimizer steps timed")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 on a GPU that has it")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=int, default=1, help="run both this many times, alternating; report the best "
                                                          "of each number (noise on a shared machine only slows)")
    p.add_argument("--threads", type=int, help="CPU threads per run (OMP_NUM_THREADS; default: torch's choice)")
    p.add_argument("--profile_steps", type=int, default=None,
                   help="after the timed window, run this many more steps of ours under torch.profiler and report "
                        "where a step's time goes (default: 10 on a GPU, else 0)")
    p.add_argument("--skip_trainer", action="store_true", help="run only our loop")
    p.add_argument("--compare_sdpa", action="store_true",
                   help="also run ours with --sdpa_backends torch (PyTorch's own attention kernels: cuDNN's first on "
                        "H100/H200), reported as ours_sdpa_torch: what the loop's default of leaving cuDNN out gives")
    p.add_argument("--worker", choices=["ours", "ours_sdpa_torch", "trainer"], help=argparse.SUPPRESS)
    p.add_argument("--result_file", help=argparse.SUPPRESS)
    p.add_argument("--model_dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if (args.train_file is None) != (args.test_file is None):
        p.error("give both --train_file and --test_file, or neither (synthetic data)")
    if args.profile_steps is None:
        import torch

        args.profile_steps = 10 if torch.cuda.is_available() else 0
    if args.max_train_samples < (args.warmup_steps + args.steps + args.profile_steps) * args.batch_size:
        p.error(f"--max_train_samples {args.max_train_samples} is less than (warmup_steps + steps + profile_steps) x "
                f"batch_size = {(args.warmup_steps + args.steps + args.profile_steps) * args.batch_size}: the timed "
                f"window must fit in one epoch")
    return args


# ---------------------------------------------------------------- setup (parent process)
def make_model_dir(args, path):
    """Tokenizer + DistilBERT config.json in `path`: the model both frameworks build with random weights."""
    from transformers import AutoTokenizer, DistilBertConfig

    from loop import synthetic

    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        tok.save_pretrained(path)
    else:
        tok = synthetic.make_tokenizer(path)
    DistilBertConfig(**SIZES[args.model_size], vocab_size=len(tok), pad_token_id=tok.pad_token_id).save_pretrained(path)
    limit = min(512, tok.model_max_length)
    return min(args.max_length or limit, limit)


def make_data(args, tmp):
    """Seeded subsets written to tmp as parquet; synthetic reviews (integer labels) without files."""
    train, test = os.path.join(tmp, "train.parquet"), os.path.join(tmp, "test.parquet")
    if args.train_file:
        common.write_subset(args.train_file, train, args.max_train_samples, args.seed)
        common.write_subset(args.test_file, test, args.max_eval_samples, args.seed)
    else:
        from loop import synthetic

        for path, n, seed in ((train, args.max_train_samples, 1), (test, args.max_eval_samples, 2)):
            jsonl = path.replace(".parquet", ".jsonl")
            synthetic.write_jsonl(synthetic.make_rows(n, seed=seed, label_names=False), jsonl)
            common.write_subset(jsonl, path, None, args.seed)
    return train, test


def main(argv=None):
    given = list(argv if argv is not None else sys.argv[1:])
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import torch

    if args.model_size is None:
        args.model_size = "distilbert" if torch.cuda.is_available() else ("small" if args.tokenizer else "tiny")
    bf16 = {"auto": common.default_bf16(), "fp32": False, "bf16": True}[args.precision]
    tmp = common.make_tmp("bench_throughput_")
    try:
        model_dir = os.path.join(tmp, "model")
        max_length = make_model_dir(args, model_dir)
        train, test = make_data(args, tmp)
        argv = [a for a in (argv if argv is not None else sys.argv[1:])]
        argv += ["--model_dir", model_dir, "--train_file", train, "--test_file", test,
                 "--max_length", str(max_length), "--precision", "bf16" if bf16 else "fp32",
                 "--model_size", args.model_size]  # later flags win: the workers get the subsets
        # Trainer before the second run of ours: a part cut off at its cap loses the less important one
        roles = ["ours"] + ([] if args.skip_trainer else ["trainer"]) + (["ours_sdpa_torch"] if args.compare_sdpa else [])
        if args.threads:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        runs = []
        for _ in range(args.repeats):
            finished = {}
            try:
                runs.append(common.run_workers(os.path.abspath(__file__), argv, roles, tmp, bf16, finished))
            except BaseException:  # stopped (bench/gpu.sh's cap) or a worker failed: report the workers that ended
                if finished.get("ours") and not runs:
                    print(json.dumps({"benchmark": "throughput", **common.versions(),
                                      "command": common.command_line("throughput.py", given), "incomplete": True,
                                      "not_run": [r for r in roles if r not in finished], **finished}), flush=True)
                raise
        results = {role: best_of([run[role] for run in runs]) for role in roles}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results.get("ours_sdpa_torch", {}).pop("epoch_padding_efficiency", None)  # the same sampler as ours'
    out = {
        "benchmark": "throughput",
        **common.versions(),
        "command": common.command_line("throughput.py", given),
        "model": f"DistilBERT {args.model_size} ({results['ours']['parameters'] / 1e6:.1f}M parameters, random weights)",
        "data": args.train_file or "synthetic",
        "train_samples": args.max_train_samples, "eval_samples": args.max_eval_samples,
        "max_length": max_length, "batch_size": args.batch_size, "precision": "bf16" if bf16 else "fp32",
        "warmup_steps": args.warmup_steps, "timed_steps": args.steps, "repeats": args.repeats,
        "threads": args.threads or torch.get_num_threads(),
        # Over the whole training subset, from the token lengths: what each batching gives per epoch.
        "epoch_padding_efficiency": results["ours"].pop("epoch_padding_efficiency"),
        **results,
    }
    if "trainer" in results:
        ours, theirs = results["ours"], results["trainer"]
        out["ratio_ours_over_trainer"] = {k: round(ours[k] / theirs[k], 3) for k in KEYS}
    if "ours_sdpa_torch" in results:
        out["ratio_ours_over_ours_sdpa_torch"] = {k: round(results["ours"][k] / results["ours_sdpa_torch"][k], 3)
                                                  for k in KEYS}
    print(json.dumps(out), flush=True)


def best_of(runs):
    """Each throughput at its best over the repeats (the run with the best training speed for the rest)."""
    best = dict(max(runs, key=lambda r: r["train_samples_per_s"]))
    for key in ("train_samples_per_s", "train_tokens_per_s", "eval_samples_per_s"):
        best[key] = max(r[key] for r in runs)
    if len(runs) > 1:
        best["train_samples_per_s_each_run"] = [round(r["train_samples_per_s"], 2) for r in runs]
        best["eval_samples_per_s_each_run"] = [round(r["eval_samples_per_s"], 2) for r in runs]
    return best


# ---------------------------------------------------------------- timing (worker processes)
class Window:
    """Counts samples and tokens of the steps after `warmup`, and times `steps` of them.

    Token counts stay on the device (no host sync per step); the clock reads synchronize the
    device twice, at the start and at the end of the window.
    """

    def __init__(self, warmup, steps):
        self.warmup, self.steps = warmup, steps
        self.start = self.end = None
        self.samples = self.padded = 0
        self.real = None

    def count(self, completed_steps, batch):
        """Called before each micro-batch with the number of optimizer steps already completed; True when
        the batch is one of the window's."""
        if not self.warmup <= completed_steps < self.warmup + self.steps:
            return False
        mask = batch["attention_mask"]
        self.samples += mask.shape[0]
        self.padded += mask.numel()
        n = mask.sum()
        self.real = n if self.real is None else self.real + n
        return True

    def step_end(self, completed_steps):
        """Called after each optimizer step; returns True when the window is over."""
        if completed_steps == self.warmup:
            common.cuda_sync()
            self.start = time.perf_counter()
        elif completed_steps == self.warmup + self.steps:
            common.cuda_sync()
            self.end = time.perf_counter()
            return True
        return False

    def check_done(self):
        if self.end is None:
            raise SystemExit("the epoch ended before the timed window did")

    def result(self):
        seconds = self.end - self.start
        real = int(self.real)
        return {"train_samples_per_s": self.samples / seconds, "train_tokens_per_s": real / seconds,
                "padding_efficiency": real / self.padded, "train_window_s": seconds,
                # Which batches fall in a short window varies: compare tokens/s when this differs much.
                "window_tokens_per_sample": real / self.samples}


class WindowDone(Exception):
    pass


# Calls that make the host wait for the device: inside a training step each one stalls the launch queue.
# aten::item is left out: it is the same call as the aten::_local_scalar_dense inside it (listing both counted
# each sync twice). _local_scalar_dense counts CPU tensors' .item() too (CPU AdamW's step counts): on CUDA,
# cudaStreamSynchronize is the count that stalls.
HOST_SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
              "aten::_local_scalar_dense", "aten::nonzero")


class StepProfile:
    """`steps` optimizer steps under torch.profiler, right after the timed window: where a step's time goes.

    Reported per optimizer step: wall time (between device syncs), GPU busy time (the sum of kernel
    times: far below the wall time means the GPU waits for the host), time spent waiting for the next
    batch, host-sync calls, and the top operators by GPU and by CPU time. The full tables go to stderr.
    """

    def __init__(self, steps):
        self.steps, self.done, self.prof, self.start, self.error = steps, 0, None, None, None

    def begin(self):
        """Start profiling; False (and a log line) if the profiler cannot start: the timings stand without it."""
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        try:
            prof = profile(activities=activities)
            common.cuda_sync()
            prof.__enter__()
        except Exception as e:
            self.error = f"the profiler did not start: {type(e).__name__}: {e}"
            common.log(self.error)
            return False
        self.prof, self.start = prof, time.perf_counter()
        return True

    def step_end(self):
        """After each optimizer step of the profile; returns True when it is over."""
        self.done += 1
        if self.done < self.steps:
            return False
        common.cuda_sync()
        self.wall = time.perf_counter() - self.start
        self.prof.__exit__(None, None, None)
        return True

    def result(self):
        """The summary (see the class); {"error": ...} instead if profiling failed, so the timings still count."""
        if self.prof is None:
            return {"error": self.error or "not run"}
        try:
            return self._summary()
        except Exception as e:
            common.log(f"profile summary failed: {type(e).__name__}: {e}")
            return {"error": f"{type(e).__name__}: {e}"}

    def _summary(self):
        n, events = self.steps, self.prof.key_averages()

        def device_us(e):
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0

        def on_gpu(e):  # a kernel's row (DeviceType.CUDA), not an operator's
            return "cuda" in str(getattr(e, "device_type", "")).lower()

        kernels = [e for e in events if on_gpu(e)]
        ops = [e for e in events if not on_gpu(e)]
        gpu_busy_ms = sum(device_us(e) for e in kernels) / 1e3 / n
        wall_ms = self.wall * 1e3 / n
        data_ms = sum(e.cpu_time_total for e in ops if e.key.startswith("enumerate(DataLoader)")) / 1e3 / n
        top_gpu = sorted(kernels, key=device_us, reverse=True)[:8]
        top_cpu = sorted((e for e in ops if not e.key.startswith(("enumerate(DataLoader)", "ProfilerStep"))),
                         key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        sort = "self_device_time_total" if kernels else "self_cpu_time_total"
        common.log(f"profile of {n} steps after the window, by {sort}:\n" + events.table(sort_by=sort, row_limit=25))
        return {
            "steps": n,
            "wall_ms_per_step": round(wall_ms, 3),
            "gpu_busy_ms_per_step": round(gpu_busy_ms, 3) if kernels else None,
            "gpu_busy_fraction": round(gpu_busy_ms / wall_ms, 3) if kernels else None,
            "dataloader_wait_ms_per_step": round(data_ms, 3),
            "host_syncs_per_step": {e.key: round(e.count / n, 2) for e in ops if e.key in HOST_SYNCS and e.count},
            "top_gpu_kernels_ms_per_step": [[e.key[:80], round(device_us(e) / 1e3 / n, 3)] for e in top_gpu],
            "top_cpu_ops_self_ms_per_step": [[e.key[:80], round(e.self_cpu_time_total / 1e3 / n, 3)] for e in top_cpu],
        }


def run_ours(args):
    from loop import Loop, TrainConfig
    from loop.loaders import EpochBatchSampler

    class TimedLoop(Loop):
        def training_step(self, batch):
            if window.count(self.state.global_step, batch):
                window_batches.append(batch)  # replayed by bare_loop_seconds
            return super().training_step(batch)

        def on_step_end(self):
            if profile.prof is not None:  # profiling the steps after the window
                if profile.step_end():
                    raise WindowDone
            elif window.step_end(self.state.global_step):
                if not profile.steps or not profile.begin():
                    raise WindowDone

    window, window_batches = Window(args.warmup_steps, args.steps), []
    profile = StepProfile(args.profile_steps)
    cfg = TrainConfig(model_name_or_path=args.model_dir, from_scratch=True, train_file=args.train_file,
                      validation_file=args.test_file, max_length=args.max_length,
                      per_device_train_batch_size=args.batch_size, seed=args.seed, num_train_epochs=1,
                      sdpa_backends="torch" if args.worker == "ours_sdpa_torch" else "auto",
                      output_dir=os.path.join(os.path.dirname(args.result_file), f"{args.worker}_out"))
    common.reset_peak_memory()
    loop = TimedLoop(cfg)
    loop.setup()
    try:
        loop.train_loop(0)
    except WindowDone:
        pass
    window.check_done()
    if common.on_cuda():  # an untimed pass: the eval loader's 2 workers start here, not in the timed pass
        loop.val_loop()
    metrics, eval_s = common.timed(loop.val_loop)
    peak_memory_mb = common.peak_memory_mb()
    bare_s = bare_loop_seconds(loop, window_batches)
    lengths = loop.train_sampler.lengths
    random = EpochBatchSampler(lengths, args.batch_size, args.seed, group_by_length=False)
    return {**window.result(), "peak_memory_mb": peak_memory_mb,
            "eval_samples_per_s": metrics["eval_samples"] / eval_s, "eval_s": eval_s,
            "profile": profile.result() if profile.steps else None,
            "bare_loop": {"train_samples_per_s": window.samples / bare_s, "train_window_s": bare_s},
            # at most: the bare loop met every batch width a second time (kernels and graphs already built)
            "loop_overhead_ms_per_step": (window.end - window.start - bare_s) * 1e3 / args.steps,
            "parameters": sum(p.numel() for p in loop.model.parameters()),
            "epoch_padding_efficiency": {
                "grouped": loop.train_sampler.padding_efficiency(epoch=0, multiple=loop.pad_multiple, cap=loop.max_length),
                "random": random.padding_efficiency(epoch=0, multiple=1)}}


def bare_loop_seconds(loop, batches):
    """The timed window's batches again, through accelerate's own minimal loop on the same prepared model,
    optimizer and schedule (forward, backward, clip, step, schedule, zero): the floor our loop's extra work
    (logging, loss shares, hooks, progress, stop checks, and the wait for the next batch: these are in memory)
    is measured against. Trains the model further: run it after everything else is measured."""
    acc, model, optimizer, schedule = loop.accelerator, loop.model, loop.optimizer, loop.lr_scheduler
    max_norm = loop.cfg.max_grad_norm
    model.train()
    common.cuda_sync()
    start = time.perf_counter()
    for batch in batches:
        with acc.accumulate(model):  # (sync_gradients set, as in the loop: else the optimizer step is skipped)
            acc.backward(model(**batch).loss)
            if max_norm:
                acc.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    common.cuda_sync()
    return time.perf_counter() - start


def run_trainer(args):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainerCallback
    from transformers import set_seed

    window = Window(args.warmup_steps, args.steps)

    class TimedTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            window.count(self.state.global_step, inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    class StopAfterWindow(TrainerCallback):
        def on_step_end(self, targs, state, control, **kwargs):
            if window.step_end(state.global_step):
                control.should_training_stop = True

    common.reset_peak_memory()
    cache = os.environ.get("HF_DATASETS_CACHE")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    train = common.tokenize_for_trainer(args.train_file, tokenizer, args.max_length, cache)
    test = common.tokenize_for_trainer(args.test_file, tokenizer, args.max_length, cache)
    set_seed(args.seed)
    config = AutoConfig.from_pretrained(args.model_dir, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    trainer = common.guide_trainer(
        model, tokenizer, train, test, os.path.join(os.path.dirname(args.result_file), "trainer_out"),
        lr=2e-5, batch_size=args.batch_size, epochs=1, bf16=args.precision == "bf16", seed=args.seed,
        per_epoch_eval=False, callbacks=[StopAfterWindow()], trainer_cls=TimedTrainer)
    trainer.train()
    window.check_done()
    if common.on_cuda():  # the same untimed pass as ours (kernels for the evaluation's shapes)
        trainer.evaluate()
    metrics, eval_s = common.timed(trainer.evaluate)
    return {**window.result(), "peak_memory_mb": common.peak_memory_mb(),
            "eval_samples_per_s": len(test) / eval_s, "eval_s": eval_s,
            "parameters": sum(p.numel() for p in model.parameters()),
            "eval_accuracy_after_window": metrics.get("eval_accuracy")}


def worker(args):
    common.start_worker()
    result = run_trainer(args) if args.worker == "trainer" else run_ours(args)
    common.finish_worker(args.result_file, result)


if __name__ == "__main__":
    main()
