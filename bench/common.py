"""What both benchmarks share: paths, seeded data subsets, worker processes, the guide's Trainer.

Each benchmark runs our loop and `transformers.Trainer` in two child processes of one
invocation (`--worker ours|trainer`), one after the other on the same files. Separate
processes keep them apart: Accelerate's global state, the peak memory figure (CPU: the
process's max RSS) and the datasets cache are each one framework's own.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
os.environ.update(OFFLINE)
ACCURACY_METRIC = os.path.join(ROOT, "loop", "metrics", "accuracy")  # evaluate's "accuracy", shipped offline


def shared_dir():
    """../shared beside the repository, or $LOOP_SHARED_DIR."""
    return os.environ.get("LOOP_SHARED_DIR") or os.path.join(ROOT, "..", "shared")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data
def write_subset(src, dest, n, seed):
    """A seeded shuffle of `src` (csv/json/jsonl/parquet), first `n` rows, written as parquet.

    IMDb's files are sorted by label, so "the first n" would be all negative; a shuffle gives a
    balanced-ish subset. Features (a ClassLabel label column) are kept. Returns `dest`.
    """
    import datasets

    ext = os.path.splitext(src)[1].lower().lstrip(".")
    builder = {"jsonl": "json", "tsv": "csv"}.get(ext, ext)
    cache = os.path.join(os.path.dirname(dest), "cache")
    ds = datasets.load_dataset(builder, data_files={"data": src}, split="data", cache_dir=cache)
    ds = ds.shuffle(seed=seed)
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    ds.to_parquet(dest)
    return dest


def tokenize_for_trainer(path, tokenizer, max_length, cache_dir):
    """The guide's preprocessing: tokenizer(text, truncation=True); the collator pads per batch."""
    import datasets

    ds = datasets.load_dataset("parquet", data_files={"data": path}, split="data", cache_dir=cache_dir)
    return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True)


# ---------------------------------------------------------------- the baseline
def guide_trainer(model, tokenizer, train, evaluation, out_dir, *, lr, batch_size, epochs, bf16, seed,
                  per_epoch_eval, callbacks=(), trainer_cls=None):
    """transformers.Trainer as the text-classification guide sets it up (no length grouping).

    TrainingArguments(learning_rate, per_device_train/eval_batch_size, num_train_epochs,
    weight_decay=0.01, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True),
    DataCollatorWithPadding and accuracy. `per_epoch_eval=False` (throughput) evaluates with a
    plain `trainer.evaluate()` call instead and saves nothing.
    """
    import evaluate
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    accuracy = evaluate.load(ACCURACY_METRIC)

    def compute_metrics(eval_pred):
        predictions, labels = eval_pred
        return accuracy.compute(predictions=np.argmax(predictions, axis=1), references=labels)

    strategy = "epoch" if per_epoch_eval else "no"
    args = TrainingArguments(
        output_dir=out_dir,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        num_train_epochs=epochs,
        weight_decay=0.01,
        eval_strategy=strategy,
        save_strategy=strategy,
        load_best_model_at_end=per_epoch_eval,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),  # needed for bf16 on a CPU; what Trainer picks anyway
        seed=seed,
        report_to="none",
    )
    return (trainer_cls or Trainer)(
        model=model, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer=tokenizer), compute_metrics=compute_metrics,
        callbacks=list(callbacks),
    )


# ---------------------------------------------------------------- processes and results
# A worker that wrote its result gets this long to exit before it is killed (see finish_worker).
EXIT_GRACE_S = 20


def run_workers(script, argv, roles, tmp, bf16, finished=None):
    """Run `script argv --worker ROLE` for each role in a child process; returns {role: result}. The children
    run in this process's folder, so the relative paths `argv` passes on name the caller's files (in the
    repository root, a file of the same name there would be benchmarked instead, silently).

    A child that wrote its result but hangs instead of exiting is killed after EXIT_GRACE_S, its result kept.
    When this process is stopped (bench/gpu.sh's cap: SIGTERM, which make_tmp turns into SystemExit), the
    running child is stopped too, its faulthandler (start_worker) printing where each of its threads was first.
    `finished`: a dict the results go into as each worker ends, for a caller that reports them when stopped."""
    results = {} if finished is None else finished
    for role in roles:
        result_file = os.path.join(tmp, f"{role}.json")
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["HF_DATASETS_CACHE"] = os.path.join(tmp, f"cache_{role}")
        # Our loop takes its precision from Accelerate (accelerate launch --mixed_precision / config).
        env["ACCELERATE_MIXED_PRECISION"] = "bf16" if bf16 else "no"
        cmd = [sys.executable, script, *argv, "--worker", role, "--result_file", result_file]
        for stale in (result_file, result_file + ".part"):  # an earlier repeat's: not this worker's result
            if os.path.exists(stale):
                os.remove(stale)
        log(f"running {role} ...")
        start = time.perf_counter()
        # The child's output goes to our stderr: stdout keeps only the one JSON line.
        proc = subprocess.Popen(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)
        try:
            returncode = _wait_for_worker(proc, role, result_file)
        except BaseException:
            _stop_worker(proc)
            raise
        if returncode != 0:
            raise WorkerFailed(f"{role} worker failed with exit code {returncode}")
        with open(result_file) as f:
            results[role] = json.load(f)
        # In the log too, so a run cut short by a time limit still shows the parts that finished.
        log(f"{role} done in {time.perf_counter() - start:.1f}s: {json.dumps(results[role])}")
    return results


class WorkerFailed(SystemExit):
    """A worker exited with an error (its traceback is in the log): a SystemExit, so that a caller that does not
    catch it ends with its message, while one that runs independent variants (bench/proof.py) records it and goes
    on; a stop (SIGTERM: make_tmp's SystemExit, or KeyboardInterrupt) is not one."""


def _wait_for_worker(proc, role, result_file):
    """The worker's exit code; 0 for one killed after writing its result (logged)."""
    written = None
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if written is None and os.path.exists(result_file):
            written = time.perf_counter()
        if written is not None and time.perf_counter() - written > EXIT_GRACE_S:
            log(f"{role} wrote its result but had not exited {EXIT_GRACE_S} s later: killed (its result is kept)")
            _stop_worker(proc)
            return 0


def _stop_worker(proc):
    """SIGUSR2 (the worker's faulthandler prints its threads' stacks), SIGTERM a second later, SIGKILL 5 s after."""
    for sig, wait in ((signal.SIGUSR2, 1), (signal.SIGTERM, 5)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def start_worker():
    """First thing in a worker: on SIGUSR2 (which _stop_worker sends before SIGTERM), print every thread's Python
    stack to stderr. A part cut off at its cap then shows where it was (on the H200 on 2026-12-04 the throughput
    worker's log simply stopped after its profile table, twice). Not on SIGTERM: the loop's own stop-signal
    handler takes that one over during fit()."""
    import faulthandler

    faulthandler.register(signal.SIGUSR2, all_threads=True)


def finish_worker(path, result):
    """Last thing in a worker: write the result and end the process at once, without the interpreter's shutdown.
    That is where the throughput worker hung on the H200 (2026-12-04: its log ended after the profile table, the
    part's cap was reached, no result came back): it drives the loop by its parts (setup, train_loop, val_loop),
    so fit() never closed the DataLoaders, and their 2 workers (the GPU default), which ignore SIGTERM, kept
    multiprocessing's exit handler waiting (reproduced on the CPU with --dataloader_num_workers 2). The loop
    closes them at exit itself now (Loop.start); this keeps a benchmark's result safe from any other teardown."""
    write_result(path, result)
    log("worker: result written")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def write_result(path, result):
    """Written whole, then renamed: the parent reads the file as soon as it exists."""
    with open(path + ".part", "w") as f:
        json.dump(result, f)
    os.replace(path + ".part", path)


def versions():
    """What every benchmark's JSON records of where it ran: the device and the libraries' versions."""
    import accelerate
    import torch
    import transformers

    return {"device": device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "cpu_threads": torch.get_num_threads()}


def command_line(script, argv):
    """The benchmark's invocation as given (before the parent adds its own flags for the workers)."""
    return " ".join(["python", f"bench/{script}", *argv])


def on_cuda():
    import torch

    return torch.cuda.is_available()


def cuda_sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    """Run `fn()` between two device syncs; returns (its result, seconds)."""
    cuda_sync()
    start = time.perf_counter()
    result = fn()
    cuda_sync()
    return result, time.perf_counter() - start


def reset_peak_memory():
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb():
    """CUDA: max memory allocated by tensors; CPU: the process's max resident set size."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def device_name():
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"


def default_bf16():
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def make_tmp(prefix):
    """A scratch folder the caller removes in a `finally`. bench/gpu.sh stops a part at its cap with
    SIGTERM, whose default action would end this process without running that `finally` (and leave the
    folder, with its datasets caches, behind): SIGTERM raises SystemExit here instead."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return tempfile.mkdtemp(prefix=prefix)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
