"""Smoke tests of the benchmarks on CPU with tiny settings: they run and report sane numbers.

Timing goals are for the benchmark runs themselves (bench/README.md), not for tests.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, env
from loop import synthetic

THREADS = {"OMP_NUM_THREADS": "1"}  # tiny models: one thread is fastest and steadiest on a shared CPU


def run_bench(script, args, timeout=300):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *map(str, args)], cwd=ROOT,
                          env=env(**THREADS), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got:\n{proc.stdout[-3000:]}"
    return json.loads(lines[0])


@pytest.mark.slow
def test_throughput_smoke():
    out = run_bench("throughput.py", ["--model_size", "tiny", "--max_train_samples", 128, "--max_eval_samples", 64,
                                      "--warmup_steps", 2, "--steps", 4, "--profile_steps", 2, "--compare_sdpa"])
    assert out["precision"] == "fp32" and out["batch_size"] == 16 and out["timed_steps"] == 4
    for who in ("ours", "ours_sdpa_torch", "trainer"):
        r = out[who]
        for key in ("train_samples_per_s", "train_tokens_per_s", "padding_efficiency", "peak_memory_mb",
                    "eval_samples_per_s"):
            assert isinstance(r[key], float) and r[key] > 0, (who, key, r[key])
        assert r["padding_efficiency"] <= 1
    for key in ("train_samples_per_s", "train_tokens_per_s", "padding_efficiency", "peak_memory_mb",
                "eval_samples_per_s"):
        assert out["ratio_ours_over_trainer"][key] > 0
    assert out["ratio_ours_over_ours_sdpa_torch"]["train_samples_per_s"] > 0  # (the same kernels on a CPU)
    epoch = out["epoch_padding_efficiency"]
    assert 0 < epoch["random"] <= epoch["grouped"] <= 1
    # where a step's time goes, from 2 profiled steps after the window (no GPU here: no kernel times)
    prof = out["ours"]["profile"]
    assert prof["steps"] == 2 and prof["wall_ms_per_step"] > 0 and prof["gpu_busy_fraction"] is None, prof
    assert any(name.startswith("aten::") and ms > 0 for name, ms in prof["top_cpu_ops_self_ms_per_step"]), prof
    assert prof["dataloader_wait_ms_per_step"] > 0
    # the window again through accelerate's minimal loop: the floor, and what ours adds to it
    bare = out["ours"]["bare_loop"]
    assert bare["train_samples_per_s"] > 0 and bare["train_window_s"] > 0, bare
    ours = out["ours"]  # the same batches: the window's samples, each once
    assert bare["train_samples_per_s"] * bare["train_window_s"] == pytest.approx(
        ours["train_samples_per_s"] * ours["train_window_s"]) == pytest.approx(4 * 16), (bare, ours)
    overhead = out["ours"]["loop_overhead_ms_per_step"]
    window_ms = 1e3 * out["ours"]["train_window_s"] / out["timed_steps"]
    assert overhead == pytest.approx(window_ms - 1e3 * bare["train_window_s"] / out["timed_steps"]), (overhead, bare)


@pytest.mark.slow
def test_accuracy_smoke(tmp_path):
    """bench/accuracy.py end to end on a tiny saved model: both frameworks, one accuracy per epoch."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    model_dir = synthetic.make_model_dir(str(tmp_path / "model"))
    AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_dir, num_labels=2)).save_pretrained(model_dir)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    synthetic.write_jsonl(synthetic.make_rows(200, seed=1, label_names=False), train)
    synthetic.write_jsonl(synthetic.make_rows(80, seed=2, label_names=False), test)
    out = run_bench("accuracy.py", ["--model", model_dir, "--train_file", train, "--test_file", test,
                                    "--max_train_samples", 96, "--max_eval_samples", 40, "--max_length", 32,
                                    "--epochs", 2, "--lr", 1e-3])
    assert out["train_samples"] == 96 and out["eval_samples"] == 40
    for who in ("ours", "trainer"):
        acc = out[who]["accuracy_per_epoch"]
        assert len(acc) == 2 and all(0 <= a <= 1 for a in acc), (who, acc)
        assert out[who]["wall_s"] > 0


def test_workers_read_the_callers_relative_paths(tmp_path):
    """accuracy.py and proof.py pass the user's paths on to child processes as given, and those ran in the
    repository root: `--train_file sub/train.parquet` from another folder read the root's file of that name (a
    benchmark of other data, said nowhere) or none. The children run in the caller's folder (audit42 F3)."""
    caller = tmp_path / "caller"
    (caller / "sub").mkdir(parents=True)
    (caller / "sub" / "rows.txt").write_text("the caller's rows")
    worker = tmp_path / "worker.py"  # reads its first argument; as a run_workers worker, writes it as the result
    worker.write_text("import json, sys\ntext = open(sys.argv[1]).read()\nprint(text)\n"
                      "if '--result_file' in sys.argv:\n"
                      "    json.dump({'read': text}, open(sys.argv[sys.argv.index('--result_file') + 1], 'w'))\n")
    driver = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nimport common, proof\n"
              "results = common.run_workers(sys.argv[2], ['sub/rows.txt'], ['ours'], sys.argv[3], False)\n"
              "rc, wall, out, cmd = proof.launch([sys.executable], sys.argv[2], ['sub/rows.txt'], {}, 'launch')\n"
              "print(json.dumps({'workers': results['ours']['read'], 'launch': out.strip()}))\n")
    proc = subprocess.run([sys.executable, "-c", driver, os.path.join(ROOT, "bench"), str(worker), str(tmp_path)],
                          cwd=caller, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"workers": "the caller's rows", "launch": "the caller's rows"}, got


def test_proof_launch_streams_its_output_and_stops_the_launcher_when_stopped(tmp_path):
    """proof.py fsdp's launches captured their output until they exited, then wrote its last 4000 characters: a
    launch cut off at the part's cap left nothing in the log, where it was included (audit66 M3). The output now goes
    to the log as it comes, and a stopped launch's launcher is stopped too (SIGTERM, which it passes on to its ranks)."""
    import queue
    import signal
    import threading
    import time

    script = tmp_path / "train.py"
    script.write_text("import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
                      "print('step 1 of 128 done', flush=True)\ntime.sleep(300)\n")
    driver = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport common, proof\ncommon.make_tmp('launch_')\n"
              "proof.launch([sys.executable], sys.argv[2], [sys.argv[3]], {}, 'uninterrupted')\n")
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, "-c", driver, os.path.join(ROOT, "bench"), str(script), str(pid_file)],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen = []
    try:
        deadline = time.time() + 30
        while not any("step 1 of 128 done" in line for line in seen) and time.time() < deadline:
            try:
                seen.append(lines.get(timeout=0.2))
            except queue.Empty:
                pass
        assert any("step 1 of 128 done" in line for line in seen), "".join(seen)[-3000:]
        proc.send_signal(signal.SIGTERM)  # as bench/gpu.sh's timeout --foreground at the cap
        proc.wait(timeout=30)
        launched = int(pid_file.read_text())
        deadline = time.time() + 10
        while os.path.exists(f"/proc/{launched}") and time.time() < deadline:  # (a child of the driver: reaped)
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{launched}"), "the launch outlived the benchmark that was stopped"
    finally:
        proc.kill()
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 128 + signal.SIGTERM


# A run_workers worker: writes its result then hangs ("after"), or hangs in stuck_here() before writing ("before").
HANGING_WORKER = """
import os, sys, time
sys.path.insert(0, {bench!r})
import common
common.start_worker()
result_file = sys.argv[sys.argv.index('--result_file') + 1]
def stuck_here():  # the marker from here: a stop sent once it exists finds the worker in this function
    open(result_file + '.started', 'w').close()
    time.sleep(600)
if sys.argv[1] == 'before':  # as the loop's stop-signal handler does in fit(): SIGTERM stops nothing at once
    import signal
    signal.signal(signal.SIGTERM, lambda *a: None)
if sys.argv[1].startswith('slow'):  # a result of its own after 3 s, then a normal exit
    time.sleep(3)
    common.write_result(result_file, {{'run': sys.argv[1]}})
    sys.exit(0)
if sys.argv[1] == 'after':
    common.write_result(result_file, {{'rows': 3}})
stuck_here()
"""
HANGING_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import common
common.EXIT_GRACE_S = 1
tmp = common.make_tmp('hang_')
print(json.dumps(common.run_workers(sys.argv[2], [sys.argv[3]], ['ours'], sys.argv[4], False)), flush=True)
"""


def start_hanging(tmp_path, when):
    worker = tmp_path / "worker.py"
    worker.write_text(HANGING_WORKER.format(bench=os.path.join(ROOT, "bench")))
    return subprocess.Popen([sys.executable, "-c", HANGING_DRIVER, os.path.join(ROOT, "bench"), str(worker), when,
                             str(tmp_path)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_worker_that_hangs_after_writing_its_result_is_killed_and_its_result_kept(tmp_path):
    """On the H200 (2026-12-04) the throughput worker's log stopped after its profile table and the part ran into
    its cap twice, with nothing back: the parent waited for an exit that never came. Now a worker whose result
    is written is given EXIT_GRACE_S to exit, then killed, and its result counts."""
    proc = start_hanging(tmp_path, "after")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"ours": {"rows": 3}}
    assert "ours wrote its result but had not exited 1 s later: killed" in err


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_a_repeated_worker_does_not_take_the_earlier_repeats_result(tmp_path):
    """throughput.py --repeats runs each worker again into the same result file: the second run found the first's
    there, was killed 20 s later as a worker that had written its result, and the first's numbers were reported
    twice (audit54)."""
    worker = tmp_path / "worker.py"
    worker.write_text(HANGING_WORKER.format(bench=os.path.join(ROOT, "bench")))
    driver = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nimport common\ncommon.EXIT_GRACE_S = 1\n"
              "runs = [common.run_workers(sys.argv[2], [arg], ['ours'], sys.argv[3], False) for arg in ('slow1', 'slow2')]\n"
              "print(json.dumps(runs))\n")
    proc = subprocess.run([sys.executable, "-c", driver, os.path.join(ROOT, "bench"), str(worker), str(tmp_path)],
                          env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [{"ours": {"run": "slow1"}}, {"ours": {"run": "slow2"}}]
    assert "killed" not in proc.stderr


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_a_worker_stopped_at_the_cap_prints_where_it_hung(tmp_path):
    """bench/gpu.sh stops a part at its cap with SIGTERM to the benchmark's process: the worker it waits on is
    stopped too, and prints its Python stack first (the hang above left no clue where it was), also when its own
    SIGTERM handler is not the default (the loop's, in fit(), only records a stop request)."""
    import signal
    import time

    proc = start_hanging(tmp_path, "before")
    try:
        deadline = time.time() + 60
        while not (tmp_path / "ours.json.started").exists() and time.time() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0 and out == ""
    assert "in stuck_here" in err, err[-3000:]  # the worker's faulthandler registered before the marker


def test_gpu_sh_a_worker_stopped_at_the_cap_prints_where_it_hung(tmp_path):
    """The same through bench/gpu.sh's real `timeout`: without --foreground it signals the whole process group,
    so a worker with the default SIGTERM action (throughput's, compile's, decoder's, Trainer's: only fit() has a
    handler) died with its parent, before the parent's SIGUSR2 could ask for its stacks, and the log said nothing
    of where it was stuck (audit66 M1). The part's benchmark here is the hanging driver, its worker a plain one."""
    (tmp_path / "worker.py").write_text(HANGING_WORKER.format(bench=os.path.join(ROOT, "bench")))
    (tmp_path / "driver.py").write_text(HANGING_DRIVER)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f"#!/bin/bash\nexec {sys.executable} {tmp_path / 'driver.py'} "
                                    f"{os.path.join(ROOT, 'bench')} {tmp_path / 'worker.py'} plain {tmp_path}\n")
    (bindir / "python3").chmod(0o755)
    proc, out, done = gpu_sh(tmp_path, "throughput", BENCH_CAP=4, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert proc.returncode == 1 and "= throughput FAILED (exit 124, cap of 4s reached)" in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "ours.json.started").exists()
    logs = (out / "logs.txt").read_text()
    assert "in stuck_here" in logs, logs[-3000:]


# ---------------------------------------------------------------- bench/proof.py (GPU proofs, CPU smoke sizes)
def finite_positive(r, *keys):
    import math

    for key in keys:
        assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, (key, r[key])


def check_header(out, part):
    assert out["benchmark"] == part and out["device"].startswith("cpu")
    assert out["torch"] and out["transformers"] and out["command"].startswith("python bench/proof.py " + part)
    finite_positive(out, "wall_s")


@pytest.mark.slow
def test_proof_compile_times_the_compile_and_the_window():
    """Eager vs torch.compile on a tiny DistilBERT: both windows timed; the compiled run's first
    step holds the compilation (seconds, against milliseconds eager) and no recompile falls in the window."""
    out = run_bench("proof.py", ["compile", "--smoke"])
    check_header(out, "compile")
    eager, compiled, graphs = out["eager"], out["compiled"], out["compiled_cuda_graphs"]
    for r in (eager, compiled, graphs):
        finite_positive(r, "train_samples_per_s", "train_tokens_per_s", "first_step_s", "peak_memory_mb",
                        "padded_shapes_warmup", "padded_shapes_window")
        assert r["padding_efficiency"] <= 1
    assert eager["config"]["torch_compile"] is False and compiled["config"]["torch_compile"] is True
    assert eager["compiled_frames_by_window_start"] == 0
    assert compiled["compiled_frames_by_window_start"] >= 1 and compiled["compiled_frames_in_window"] == 0
    assert compiled["first_step_s"] > 10 * eager["first_step_s"]
    # default mode: batches padded to multiples of 8 (64 only for CUDA graphs); torch.compile turns dynamic at
    # the second width (in the warm-up), and widths first seen in the window recompile nothing
    assert compiled["padded_shapes_warmup"] >= 2 and compiled["padded_shapes_window_new"] >= 1
    assert eager["padded_shapes_warmup"] + eager["padded_shapes_window"] > 2
    finite_positive(out["ratio_compiled_over_eager"], "train_samples_per_s", "first_step_s")
    # the CUDA-graph mode (on a CPU, compiled without the graphs): widths padded to 64, so these short reviews
    # make one shape, compiled once before the window
    assert graphs["config"]["torch_compile_mode"] == "reduce-overhead"
    assert graphs["padded_shapes_warmup"] == graphs["padded_shapes_window"] == 1, graphs
    assert graphs["compiled_frames_by_window_start"] >= 1 and graphs["compiled_frames_in_window"] == 0
    assert graphs["first_step_s"] > 10 * eager["first_step_s"]
    finite_positive(out["ratio_compiled_cuda_graphs_over_eager"], "train_samples_per_s", "first_step_s")


@pytest.mark.slow
def test_proof_decoder_full_vs_lora():
    """A tiny Qwen2-shaped decoder (a Llama config: with a qwen2 one, best/ would load the tokenizer as
    Qwen2Tokenizer, refused at the start), tokenizer without a pad token: the loop pads with eos; LoRA trains a
    fraction of the parameters; both report speed and memory."""
    out = run_bench("proof.py", ["decoder", "--smoke", "--precision", "bf16"])  # bf16 autocast on the CPU
    check_header(out, "decoder")
    assert out["config"]["num_hidden_layers"] == 2 and out["config"]["vocab_size"] % 64 == 0
    assert out["gradient_checkpointing"] is False and out["precision"] == "bf16"
    full, lora, half = out["full"], out["lora"], out["lora_bf16_body"]
    for r in (full, lora, half):
        finite_positive(r, "train_samples_per_s", "train_tokens_per_s", "peak_memory_mb", "trainable_parameters",
                        "weight_memory_mb")
        assert r["pad_token"] == "[SEP]" and r["padding_side"] == "right"  # eos, chosen by the loop
        assert r["mixed_precision"] == "bf16"
    assert full["trainable_parameters"] == full["parameters"] and full["frozen_weight_memory_mb"] == 0
    assert lora["config"]["lora_r"] == 16 and 0 < lora["trainable_parameters"] < full["trainable_parameters"]
    assert out["ratio_lora_over_full"]["trainable_parameters"] < 1
    # the same LoRA model, its frozen body in bf16: the same trainable weights, the frozen ones in half the bytes
    # (all but the head's frozen float32 original, PEFT's copy beside the trained one)
    assert half["config"]["torch_dtype"] == "bfloat16" and half["trainable_parameters"] == lora["trainable_parameters"]
    assert 0.5 <= half["frozen_weight_memory_mb"] / lora["frozen_weight_memory_mb"] < 0.52
    assert out["ratio_lora_bf16_body_over_full"]["weight_memory_mb"] < out["ratio_lora_over_full"]["weight_memory_mb"]


# A stand-in for bench/proof.py's timed worker (run as proof.py's own __file__): a result at once, or, for the role
# in $STUB_FAIL, an error exit, for the one in $STUB_HANG, a hang (a marker in $STUB_MARK once started).
STUB_WORKER = """
import json, os, sys, time
role = sys.argv[sys.argv.index('--worker') + 1]
result_file = sys.argv[sys.argv.index('--result_file') + 1]
open(os.path.join(os.environ['STUB_MARK'], role + '.started'), 'w').close()
if role == os.environ.get('STUB_FAIL'):
    sys.exit('stub: ' + role + ' broke')
if role == os.environ.get('STUB_HANG'):
    time.sleep(600)
json.dump({'parameters': 1000, 'trainable_parameters': 100, 'train_samples_per_s': 2.0, 'train_tokens_per_s': 3.0,
           'first_step_s': 0.5, 'peak_memory_mb': 10.0, 'weight_memory_mb': 1.0, 'eval_samples_per_s': 4.0,
           'epoch_padding_efficiency': {'grouped': 0.9, 'random': 0.5}, 'train_samples': 3, 'eval_samples': 2,
           'max_length': 8}, open(result_file, 'w'))
"""
STUB_DRIVER = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
bench = importlib.import_module(sys.argv[2])
bench.__file__ = sys.argv[3]  # the script run_workers starts as the workers: the stand-in
bench.main(sys.argv[4:])
"""


def run_stub(tmp_path, script, args, **stub):
    """bench/SCRIPT's main(args) with STUB_WORKER as its workers."""
    (tmp_path / "worker.py").write_text(STUB_WORKER)
    return subprocess.Popen([sys.executable, "-c", STUB_DRIVER, os.path.join(ROOT, "bench"), script,
                             str(tmp_path / "worker.py"), *args], env=env(STUB_MARK=tmp_path, **stub),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_stub_proof(tmp_path, args, **stub):
    return run_stub(tmp_path, "proof", args, **stub)


def stop_when_started(proc, marker):
    """SIGTERM to `proc` (as bench/gpu.sh's timeout at a part's cap) once `marker` exists; returns its output."""
    import signal
    import time

    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert marker.exists()
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=30)
    finally:
        proc.kill()


@pytest.mark.slow  # ~11 s: proof.py's workers started for real
def test_proof_a_failed_variant_is_recorded_and_the_others_still_run(tmp_path):
    """compile's last variant, the CUDA-graph mode, had never run on a GPU: had it failed there, proof.py printed no
    JSON at all and eager's and compiled's numbers were lost with it (audit66 M2). A failed variant is now recorded
    as an error, the others run, their ratios are computed, and the exit code still says the part is not whole."""
    proc = run_stub_proof(tmp_path, ["compile", "--smoke"], STUB_FAIL="compiled")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-3000:]
    assert "proof.py compile: compiled failed" in err and "stub: compiled broke" in err, err[-3000:]
    (line,) = out.strip().splitlines()
    got = json.loads(line)
    assert got["benchmark"] == "compile" and got["failed"] == ["compiled"] and "incomplete" not in got
    assert got["compiled"] == {"error": "compiled worker failed with exit code 1"}
    assert got["eager"]["train_samples_per_s"] == got["compiled_cuda_graphs"]["train_samples_per_s"] == 2.0
    assert got["ratio_compiled_cuda_graphs_over_eager"]["train_samples_per_s"] == 1.0
    assert "ratio_compiled_over_eager" not in got and got["model"].startswith("DistilBERT tiny (0.0M parameters")
    assert {p.name for p in tmp_path.glob("*.started")} == {"eager.started", "compiled.started",
                                                           "compiled_cuda_graphs.started"}


@pytest.mark.slow  # ~11 s: proof.py's workers started for real
def test_proof_stopped_at_the_cap_prints_the_variants_that_finished(tmp_path):
    """bench/gpu.sh stops a part at its cap with SIGTERM: proof.py printed nothing, so the decoder's full and LoRA
    numbers were lost when its last variant was cut off (audit66 M2). It now prints the finished ones, marked
    incomplete with what did not run, as throughput.py does."""
    proc = run_stub_proof(tmp_path, ["decoder", "--smoke", "--precision", "bf16"], STUB_HANG="lora")
    out, err = stop_when_started(proc, tmp_path / "lora.started")
    assert proc.returncode != 0, err[-3000:]
    (line,) = out.strip().splitlines()
    got = json.loads(line)
    assert got["benchmark"] == "decoder" and got["incomplete"] is True and got["device"].startswith("cpu")
    assert got["not_run"] == ["lora", "lora_bf16_body"] and got["full"]["train_samples_per_s"] == 2.0
    assert got["command"] == "python bench/proof.py decoder --smoke --precision bf16"


def library_versions():
    import accelerate
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__}


def test_accuracy_records_the_versions_and_the_command(tmp_path):
    """proof.py's JSONs said which torch, transformers and accelerate ran and how they were invoked; accuracy.json
    and throughput.json, the ones the README's tables come from, said neither (audit66 L1)."""
    libs = library_versions()
    args = ["--model", "m", "--train_file", "a.parquet", "--test_file", "b.parquet", "--skip_trainer"]
    proc = run_stub(tmp_path, "accuracy", args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    got = json.loads(out)
    assert {k: got.get(k) for k in libs} == libs and got["device"].startswith("cpu"), got
    assert got["command"] == "python bench/accuracy.py " + " ".join(args), got


@pytest.mark.slow
def test_throughput_records_the_versions_and_the_command(tmp_path):
    """As above for throughput.json (its synthetic data go through datasets: ~15-30 s), also in its JSON of a run
    cut off at its cap."""
    libs = library_versions()
    args = ["--model_size", "tiny", "--max_train_samples", "64", "--max_eval_samples", "16", "--warmup_steps", "1",
            "--steps", "2"]
    proc = run_stub(tmp_path, "throughput", args, STUB_HANG="trainer")  # ours finishes, Trainer is cut off
    out, err = stop_when_started(proc, tmp_path / "trainer.started")
    got = json.loads(out)
    assert got["incomplete"] is True and got["not_run"] == ["trainer"] and got["ours"]["train_samples_per_s"] == 2.0
    assert {k: got.get(k) for k in libs} == libs and got["device"].startswith("cpu"), got
    assert got["command"] == "python bench/throughput.py " + " ".join(args), got
    proc = run_stub(tmp_path, "throughput", args + ["--skip_trainer"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    got = json.loads(out)
    assert {k: got.get(k) for k in libs} == libs and got["command"] == "python bench/throughput.py " + " ".join(
        args + ["--skip_trainer"]), got


PARTS = ("throughput", "compile", "fsdp", "decoder", "accuracy", "accuracy_trainer")


def gpu_sh(tmp_path, part, setup="export IMDB_DIR=/nonexistent MINILM_DIR=/nonexistent\n", **extra):
    """bench/gpu.sh PART in a copy of the layout with a stand-in .carry/setup.sh (no GPU, no data)."""
    if not (tmp_path / "bench").exists():
        os.symlink(os.path.join(ROOT, "bench"), tmp_path / "bench")
        (tmp_path / ".carry").mkdir()
        (tmp_path / ".carry" / "setup.sh").write_text(setup)
    out, done = tmp_path / "out", tmp_path / "done"
    proc = subprocess.run(["bash", "bench/gpu.sh", part], cwd=tmp_path,
                          env=env(OUT=out, BENCH_DONE_DIR=done, **extra), capture_output=True, text=True, timeout=120)
    return proc, out, done


@pytest.mark.parametrize("setup", ["export IMDB_DIR=/nonexistent\n", "export MINILM_DIR=/nonexistent\n"])
def test_gpu_sh_without_the_model_or_the_data_packed_says_so(tmp_path, setup):
    """.carry/setup.sh exports MINILM_DIR only when pack.sh packed the model (IMDB_DIR: the data), and every part
    needs both: gpu.sh stopped with bash's "MINILM_DIR: unbound variable" (audit66). It says what to do now."""
    proc, out, done = gpu_sh(tmp_path, "all", setup=setup)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unbound variable" not in proc.stderr and "+ python3" not in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert "pack.sh data model" in line, line


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_gpu_sh_a_failed_part_does_not_stop_the_next(tmp_path):
    """bench/gpu.sh all: every part capped at 1 s fails, each leaves its log, all six ran, exit 6."""
    proc, out, done = gpu_sh(tmp_path, "all", BENCH_CAP=1)
    assert proc.returncode == 6, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = (out / "logs.txt").read_text()
    for part in PARTS:
        assert f"= {part} FAILED" in proc.stdout and f"===== {part}: exit " in logs
        assert not (out / f"{part}.json").exists() and not (done / f"{part}.json").exists()
    # at most 8 files come back from a device call: the logs are one file
    assert sorted(os.listdir(out)) == ["logs.txt"], os.listdir(out)
    # the parts never measured first: the accuracy part (measured on 2026-12-04) and Trainer's baseline last
    ran = [line.split()[1] for line in proc.stdout.splitlines() if line.endswith("s; log tail:")]
    assert ran == list(PARTS), ran


def test_gpu_sh_skips_what_the_budget_cannot_hold_and_rest_runs_only_what_is_left(tmp_path):
    """A call's budget too small for any part: each is skipped, not started (no log). `rest` on the
    same machine: a part done in an earlier call is not run again, its JSON comes back into $OUT."""
    proc, out, done = gpu_sh(tmp_path, "all", BENCH_BUDGET_S=60)
    assert proc.returncode == 6, proc.stdout[-3000:] + proc.stderr[-3000:]
    for part in PARTS:
        assert f"= {part} SKIPPED" in proc.stdout and "bench/gpu.sh rest" in proc.stdout
    assert os.listdir(out) == [], os.listdir(out)  # nothing started, nothing logged
    # as if call 1 had finished throughput and accuracy
    (done / "throughput.json").write_text('{"benchmark": "throughput"}\n')
    (done / "accuracy.json").write_text('{"benchmark": "accuracy"}\n')
    proc, out, done = gpu_sh(tmp_path, "rest", BENCH_CAP=1)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the commands started ("+ ..."), not the whole output: a failed part's log tail may name bench/throughput.py
    # (proof.py imports it), as when one failed within BENCH_CAP's second
    started = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    for part, command in (("throughput", "bench/throughput.py"), ("accuracy", "--skip_trainer")):
        assert f"= {part} done in an earlier call" in proc.stdout
        assert not any(command in line for line in started), started
        assert json.loads((out / f"{part}.json").read_text()) == {"benchmark": part}
    assert "--skip_ours" in proc.stdout  # accuracy_trainer: the same script, not done yet
    logs = (out / "logs.txt").read_text()
    for part in ("fsdp", "compile", "decoder", "accuracy_trainer"):
        assert f"= {part} FAILED" in proc.stdout and f"===== {part}: exit " in logs
    assert "===== throughput:" not in logs and "===== accuracy:" not in logs


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_gpu_sh_rest_runs_the_parts_never_tried_before_it_retries_a_failed_one(tmp_path):
    """On 2026-12-04 call 2 ran throughput again after it had failed in call 1 (the same hang, 207 s): `rest` now
    runs every part no call finished or tried first, and only then the failed ones."""
    done = tmp_path / "done"
    done.mkdir()
    (done / "throughput.failed").touch()  # as call 1 left it
    (done / "accuracy.json").write_text('{"benchmark": "accuracy"}\n')
    proc, out, done = gpu_sh(tmp_path, "rest", BENCH_CAP=1)
    assert proc.returncode == 5, proc.stdout[-3000:] + proc.stderr[-3000:]
    starts = [line.split()[2] if "bench/proof.py" not in line else line.split()[3]
              for line in proc.stdout.splitlines() if line.startswith("+ python3 ")]
    # accuracy done before; accuracy_trainer is bench/accuracy.py too
    assert starts == ["compile", "fsdp", "decoder", "bench/accuracy.py", "bench/throughput.py"], starts
    assert proc.stdout.index("= throughput failed in an earlier call: again") > proc.stdout.index("= compile FAILED")


def test_gpu_sh_kills_what_a_failed_part_left_behind_and_nothing_else(tmp_path):
    """A failed part's processes that escaped `timeout` into a session of their own (as torchrun's ranks do)
    are killed before the next part; a training of someone else on the machine, whose command line names
    loop/train.py too, is not (gpu.sh killed every process by that name: the other tests' runs beside it)."""
    import signal
    import time

    bindir, pids, kids = tmp_path / "bin", tmp_path / "pids", tmp_path / "kids"
    bindir.mkdir()
    # python3 for the part: a rank in a session of its own, a child in its process group that timeout --foreground
    # does not signal (the part's own process alone: it stops its workers itself), then a hang until the cap
    (bindir / "python3").write_text(f"#!/bin/bash\nsetsid bash -c 'echo $$ >> {pids}; sleep 300; :' loop/train.py &\n"
                                    f"bash -c 'echo $$ >> {kids}; sleep 300; :' &\n"
                                    "exec sleep 300\n")
    (bindir / "python3").chmod(0o755)
    other = subprocess.Popen(["bash", "-c", "sleep 300; :", "loop/train.py"], start_new_session=True)

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    try:
        proc, out, done = gpu_sh(tmp_path, "throughput", BENCH_CAP=3, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
        assert proc.returncode == 1 and "= throughput FAILED" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
        (left,) = map(int, pids.read_text().split())
        deadline = time.time() + 10  # killed: gone once its new parent reaps it
        while alive(left) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(left), f"the part's rank {left} outlived it"
        (kid,) = map(int, kids.read_text().split())
        while alive(kid) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(kid), f"the part's child {kid} outlived it"
        assert other.poll() is None, "gpu.sh killed a process that was not its own"
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
        if pids.exists():
            for pid in map(int, pids.read_text().split()):  # (a session of its own: its group is its pid)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if kids.exists():
            for pid in map(int, kids.read_text().split()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
