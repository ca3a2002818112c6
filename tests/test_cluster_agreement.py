"""What the nodes of a multi-node run must share or agree on, checked across the processes (audit66).

Two processes on this machine stand for two nodes: a small wrapper gives each rank a working folder of its own
(LOOP_TEST_CWD_<rank>) before it runs loop/train.py, so a relative --output_dir or --train_file names another
folder on each, as a node-local disk does. Nothing in the loop knows of the wrapper.
"""

import os

import pytest

from conftest import ROOT, run_cli, synthetic, tiny_args

WRAPPER = """import os, runpy, sys
os.chdir(os.environ["LOOP_TEST_CWD_" + os.environ["RANK"]])
script = {train!r}
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
"""


def two_nodes(tmp_path):
    """The wrapper script and each rank's working folder (node0/, node1/)."""
    wrapper = tmp_path / "per_rank_cwd.py"
    wrapper.write_text(WRAPPER.format(train=os.path.join(ROOT, "loop", "train.py")))
    cwds = [tmp_path / "node0", tmp_path / "node1"]
    for d in cwds:
        d.mkdir()
    return str(wrapper), {f"LOOP_TEST_CWD_{i}": str(d) for i, d in enumerate(cwds)}


def run_two(tmp_path, args):
    wrapper, cwds = two_nodes(tmp_path)
    # (a rank that does not see the lock looks again for NFS's sake, 65 s by default)
    return run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, LOOP_SHARED_VIEW_WAIT_S="2",
                   **cwds)


def lines(p, text):
    """The output lines that hold `text` (an error every rank raised together: the main process says it once)."""
    return [ln for ln in (p.stdout + p.stderr).splitlines() if text in ln]


def test_an_output_dir_the_nodes_do_not_share_is_refused_on_every_rank(tiny_model, tiny_data, tmp_path):
    """S1: a relative --output_dir from another working folder (or a node-local disk) trained, said "checkpoint
    saved" and exited 0 while node 0's checkpoints held rank 0's RNG state alone: its resume died with a raw
    FileNotFoundError on one rank and a gloo traceback on the other. Now every rank refuses it at the start."""
    args = tiny_args(tiny_model, tiny_data, "out", max_steps=2, checkpointing_steps=1, ddp_timeout=120)
    p = run_two(tmp_path, args)
    said = lines(p, "does not see the lock process 0")
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "process 1 on host" in said[0] and str(tmp_path / "node1" / "out") in said[0], said[0]
    assert not os.path.exists(tmp_path / "node0" / "out"), os.listdir(tmp_path / "node0" / "out")  # lock given back


def test_a_checkpoint_missing_another_process_state_is_not_saved(tiny_model, tiny_data, tmp_path):
    """S1: a folder whose lock both nodes see but whose checkpoints/ they do not share (here the lock file alone is
    linked into node 1's folder) wrote step_N/ with rank 0's RNG state alone and said "checkpoint saved". Now the
    save refuses an incomplete checkpoint on every rank."""
    wrapper, cwds = two_nodes(tmp_path)
    (tmp_path / "node0" / "out").mkdir()
    (tmp_path / "node1" / "out").mkdir()
    os.symlink(tmp_path / "node0" / "out" / ".loop.lock", tmp_path / "node1" / "out" / ".loop.lock")
    args = tiny_args(tiny_model, tiny_data, "out", max_steps=2, checkpointing_steps=1, ddp_timeout=120)
    p = run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, **cwds)
    said = lines(p, "lacks the random_states_<i>.pkl of process 1,")
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "checkpoint saved" not in p.stdout + p.stderr
    assert not os.path.exists(tmp_path / "node0" / "out" / "checkpoints" / "step_1")


def test_other_training_data_on_one_node_is_refused_on_every_rank(tiny_model, tiny_data, tmp_path):
    """S2: node-local copies of the training file that differ trained silently (each rank on its own examples);
    a resume then blamed the checkpoint ("made on other data") on one rank only. Now the ranks compare their
    data's signature before any training."""
    wrapper, cwds = two_nodes(tmp_path)
    rows = synthetic.make_rows(600, seed=1)
    synthetic.write_jsonl(rows, tmp_path / "node0" / "train.jsonl")
    rows[5] = {**rows[5], "text": rows[5]["text"] + " edited"}  # one text differs, the count is the same
    synthetic.write_jsonl(rows, tmp_path / "node1" / "train.jsonl")
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), train_file="train.jsonl", max_steps=2,
                     ddp_timeout=120)
    p = run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, **cwds)
    said = lines(p, "read other data than process 0")
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "process 1 on host" in said[0] and "(training texts (token lengths) differ; " in said[0], said[0]


def test_a_data_error_on_one_node_stops_every_rank_with_its_line(tiny_model, tiny_data, tmp_path):
    """S6: an error only one node hits (its copy of the data broken, its datasets cache read-only) was that rank's
    line and, on the others, a gloo traceback (they waited for it in the tokenizing's barrier). Now every rank
    says the same line, naming the process that hit it."""
    wrapper, cwds = two_nodes(tmp_path)
    synthetic.write_jsonl(synthetic.make_rows(600, seed=1), tmp_path / "node0" / "train.jsonl")
    (tmp_path / "node1" / "train.jsonl").write_text("")
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"), train_file="train.jsonl", max_steps=2,
                     ddp_timeout=60)
    p = run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, **cwds)
    said = lines(p, "is empty")
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "process 1 on host" in said[0] and "Traceback" not in p.stderr, p.stderr[-3000:]


def test_a_model_folder_on_one_node_only_stops_every_rank_with_its_line(tiny_model, tiny_data, tmp_path):
    """A model folder one node lacks (downloaded to node 0's local disk, a relative path): process 1 said its line and
    died while process 0 waited for it in the data's first collective, a gloo traceback here (with NCCL, a hang until
    --ddp_timeout, 30 minutes by default). Now the model's config, tokenizer and weights load under the same
    agreement as the data: every rank says process 1's line (audit67)."""
    import shutil

    wrapper, cwds = two_nodes(tmp_path)
    shutil.copytree(tiny_model, tmp_path / "node0" / "model")
    args = tiny_args("model", tiny_data, str(tmp_path / "out"), max_steps=2, ddp_timeout=60)
    p = run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, **cwds)
    said = lines(p, "model")
    said = [ln for ln in said if ln.startswith("error:")]
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert said[0].startswith("error: process 1 on host '") and "'model'" in said[0], said[0]


def test_a_model_folder_on_one_node_only_stops_every_rank_of_eval_only_too(tiny_model, tiny_data, tmp_path):
    """(review r F2) --eval_only checked its options outside the agreement: process 1's line, and process 0 waited
    in the next collective until the launcher killed it."""
    import shutil

    wrapper, cwds = two_nodes(tmp_path)
    shutil.copytree(tiny_model, tmp_path / "node0" / "model")
    args = ["--model_name_or_path", "model", "--eval_only", "true", "--validation_file",
            os.path.join(tiny_data, "validation.jsonl"), "--output_dir", str(tmp_path / "out"), "--ddp_timeout", "60"]
    p = run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, **cwds)
    said = [ln for ln in lines(p, "model") if ln.startswith("error:")]
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert said[0].startswith("error: process 1 on host '") and "'model'" in said[0], said[0]


@pytest.mark.slow  # ~15 s: a process of its own (PMI_* variables are not forked from the zygote)
def test_an_mpi_launch_without_master_addr_is_one_line(tiny_model, tiny_data, tmp_path):
    """S7: PMI_SIZE (mpirun, srun --mpi) without MASTER_ADDR was accelerate's raw ValueError and exit 1."""
    args = tiny_args(tiny_model, tiny_data, str(tmp_path / "out"))
    p = run_cli(args, how="python", check=False, timeout=300, PMI_SIZE="2", PMI_RANK="0",
                ACCELERATE_USE_CPU="true")
    assert p.returncode == 2, p.stderr[-3000:]
    assert "MASTER_ADDR" in p.stderr and "torchrun" in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert not os.path.exists(tmp_path / "out")


def test_the_wait_for_another_nodes_view_stays_within_the_process_groups_timeout(tmp_path, monkeypatch):
    """A rank that does not see the lock looks again (NFS shows another node's new file late), 65 s by default or
    LOOP_SHARED_VIEW_WAIT_S; process 0 waits for it in a collective meanwhile, so with --ddp_timeout 30 the gloo
    timeout killed the run first (exit 1, no line: review r F1): the wait is at most half the timeout. A value of the
    variable that is no number of seconds is one line (was a float() traceback on every rank: r F2)."""
    from types import SimpleNamespace

    from loop import checkpoint

    now = [0.0]
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(checkpoint.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    released = []
    me = SimpleNamespace(accelerator=SimpleNamespace(is_main_process=True), release=lambda: released.append(1),
                         cfg=SimpleNamespace(output_dir=str(tmp_path), ddp_timeout=30))

    def waited(**env):
        monkeypatch.delenv("LOOP_SHARED_VIEW_WAIT_S", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        now[0] = 0.0
        said = checkpoint.Checkpointer.check_shared_output_dir(me, "token", str(tmp_path), "node0")
        assert said.startswith("process 0 on host ") and "does not see the lock process 0 on host 'node0'" in said
        return now[0]

    assert 15 <= waited() <= 16  # half of --ddp_timeout 30, not 65 s
    me.cfg.ddp_timeout = 1800
    assert 65 <= waited() <= 66 and 3 <= waited(LOOP_SHARED_VIEW_WAIT_S="3") <= 4
    assert released == [1, 1, 1]  # the main process gave the lock back each time
    for bad in ("1m", "nan", "-5"):  # said by every rank after the gather (set on one node alone, r2 R2)
        monkeypatch.setenv("LOOP_SHARED_VIEW_WAIT_S", bad)
        now[0] = 0.0
        assert checkpoint.Checkpointer.check_shared_output_dir(me, "token", str(tmp_path), "node0") == (
            f"LOOP_SHARED_VIEW_WAIT_S='{bad}' is not a number of seconds; set it to one (e.g. 120) or unset it.")
        assert now[0] == 0.0  # no waiting
    assert released == [1] * 6


def test_a_wait_variable_set_wrong_on_one_node_is_said_by_every_rank(tiny_model, tiny_data, tmp_path):
    """LOOP_SHARED_VIEW_WAIT_S=abc on node 1 alone: that rank raised on its own and process 0 waited in the gather
    until --ddp_timeout (review r2 R2). Now it is gathered: one line naming the process, exit 2 at once, the lock
    given back."""
    wrapper = tmp_path / "rank1_env.py"
    wrapper.write_text(f"""import os, runpy, sys
if os.environ["RANK"] == "1":
    os.environ["LOOP_SHARED_VIEW_WAIT_S"] = "abc"
sys.argv[0] = {os.path.join(ROOT, "loop", "train.py")!r}
runpy.run_path(sys.argv[0], run_name="__main__")
""")
    out = tmp_path / "out"
    args = tiny_args(tiny_model, tiny_data, str(out), max_steps=2, ddp_timeout=120)
    p = run_cli(args, nproc=2, how="fork", script=str(wrapper), check=False, timeout=100)
    said = lines(p, "LOOP_SHARED_VIEW_WAIT_S")
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert said[0].startswith("error: process 1 on host '") and said[0].endswith(
        "': LOOP_SHARED_VIEW_WAIT_S='abc' is not a number of seconds; set it to one (e.g. 120) or unset it."), said[0]
    assert not os.path.exists(out / ".loop.lock")


def test_other_evaluation_data_on_one_node_is_refused_in_eval_only(tiny_model, tiny_data, tmp_path):
    """--eval_only on two nodes whose copies of the evaluation file differ scored each process's share of its own
    rows and gathered them into one accuracy, silently (the training run's data check was not run there). Now the
    ranks compare the scored splits' signature first, as a training run compares its data."""
    trained = str(tmp_path / "trained")
    run_cli(tiny_args(tiny_model, tiny_data, trained, max_steps=2), how="python")
    wrapper, cwds = two_nodes(tmp_path)
    rows = synthetic.make_rows(60, seed=4)
    synthetic.write_jsonl(rows, tmp_path / "node0" / "dev.jsonl")
    rows[7] = {**rows[7], "text": rows[7]["text"] + " edited"}  # one text differs, the count is the same
    synthetic.write_jsonl(rows, tmp_path / "node1" / "dev.jsonl")
    args = ["--model_name_or_path", os.path.join(trained, "best"), "--eval_only", "true", "--validation_file",
            "dev.jsonl", "--output_dir", str(tmp_path / "scored"), "--ddp_timeout", "120"]
    p = run_cli(args, nproc=2, how="fork", script=wrapper, check=False, timeout=300, **cwds)
    said = lines(p, "read other data than process 0")
    assert p.returncode == 2 and len(said) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "process 1 on host" in said[0] and "(the evaluation examples (texts or labels) differ)" in said[0], said[0]
    assert not os.path.exists(tmp_path / "scored" / "eval_results.json")


def test_what_differs_between_two_processes_data_is_said_in_words():
    """The processes' data check named signature keys ('eval_examples_sha1 differs'), and a shuffled copy of the
    evaluation file as 'the evaluation examples' labels' though only their order differed (review rev F2)."""
    from loop.resume_checks import what_differs

    first = {"eval_examples": 60, "eval_labels_sha1": "a", "eval_examples_sha1": "x", "extra_eval": {"ood": [5, "q"]},
             "train_tokens_sha1": "t"}
    edited = {**first, "eval_labels_sha1": "b", "eval_examples_sha1": "y"}
    assert what_differs(first, edited, ["eval_examples_sha1", "eval_labels_sha1"], 1) == \
        "the evaluation examples (texts or labels) differ"
    assert what_differs(first, {**first, "eval_labels_sha1": "b"}, ["eval_labels_sha1"], 1) == \
        "the order of the evaluation examples differs"
    fewer = {**first, "eval_examples": 59, "extra_eval": {"ood": [4, "r"], "hard": [3, "s"]}}
    assert what_differs(first, fewer, ["eval_examples", "extra_eval"], 3) == \
        "evaluation examples: 60 on process 0, 59 on process 3; the evaluation sets 'hard', 'ood' differ"
