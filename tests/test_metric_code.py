"""audit38 #4: a --metric/--metrics name beyond the shipped ones is an evaluate module whose Python code runs.
A local script or someone's Hub module (user/name) needs --trust_remote_code, also when a --config file names it,
and is refused at the start without it; evaluate's own modules (a bare name, evaluate-metric/NAME) load without
it. Whatever runs is named in one line at the start. Quick: one tiny run with the flag (a few seconds)."""

import json
import os

import pytest

from conftest import run_cli, tiny_args
from test_errors import fails
from loop import scores
from loop.config import TrainConfig
from loop.errors import UserError


def metric_script(folder, marker):
    """folder/<folder name>.py: an evaluate metric ('evilmetric', the accuracy) whose import appends to `marker`."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(folder) + ".py")
    with open(path, "w") as f:
        f.write(f"open({str(marker)!r}, 'a').write('metric code ran\\n')\n"
                "import datasets\nimport evaluate\n\n\n"
                "class Evilmetric(evaluate.Metric):\n"
                "    def _info(self):\n"
                "        ids = datasets.Value('int64')\n"
                "        features = datasets.Features({'predictions': ids, 'references': ids})\n"
                "        return evaluate.MetricInfo(description='x', citation='', inputs_description='',\n"
                "                                   features=features)\n\n"
                "    def _compute(self, predictions, references):\n"
                "        right = sum(p == r for p, r in zip(predictions, references))\n"
                "        return {'evilmetric': right / len(predictions)}\n")
    return path


def test_whose_code_a_metric_name_runs_is_resolved_as_evaluate_resolves_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = metric_script(str(tmp_path / "mine"), tmp_path / "ran")
    assert scores.metric_code("roc_auc") == ("evaluate", "evaluate-metric/roc_auc")
    assert scores.metric_code("evaluate-metric/bleu") == ("evaluate", "evaluate-metric/bleu")
    assert scores.metric_code("someone/metric") == ("hub", "someone/metric")
    assert scores.metric_code("roc_auc/") == ("hub", "roc_auc/")  # evaluate asks the Hub for it, not its own org
    # evaluate.load looks for a local script first: a folder holding <folder>.py, even under a bare name
    for name in ("mine", "./mine", script, str(tmp_path / "mine")):
        assert scores.metric_code(name) == ("script", script), name
    assert scores.metric_code("other.py") == ("script", str(tmp_path / "other.py"))
    # a folder named like a script, with a trailing slash: evaluate runs <it>/evil.py inside (audit62 s2: read as
    # evil.py/evil.py.py, nothing to refuse, and it ran without --trust_remote_code)
    os.makedirs(tmp_path / "mx" / "evil.py")
    (tmp_path / "mx" / "evil.py" / "evil.py").write_text("raise SystemExit('ran')\n")
    for name in (str(tmp_path / "mx" / "evil.py") + "/", "./mx/evil.py/"):
        assert scores.metric_code(name) == ("script", str(tmp_path / "mx" / "evil.py" / "evil.py")), name
        with pytest.raises(UserError, match="pass --trust_remote_code"):
            TrainConfig(metrics=f"accuracy,{name}").check_metrics((), (), "Loop")
    assert scores.is_shipped("accuracy") and scores.is_shipped("f1_macro")
    assert not scores.is_shipped(os.path.join(scores.LOCAL_METRICS, "accuracy"))  # a path: evaluate loads its script


def test_a_script_or_someones_hub_module_needs_trust_remote_code_and_evaluates_own_does_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = metric_script(str(tmp_path / "mine"), tmp_path / "ran")
    for kwargs, flag, words in [(dict(metrics=f"accuracy,{script}"), "--metrics", "a local metric script"),
                                (dict(metric="mine"), "--metric", f"a local metric script ({script})"),
                                # an absolute folder was taken for a shipped name (os.path.join kept it whole): no
                                # gate, and a KeyError traceback at the first evaluation
                                (dict(metrics=str(tmp_path / "mine")), "--metrics",
                                 f"a local metric script ({script})"),
                                (dict(metrics="someone/metric"), "--metrics", "on the Hugging Face Hub")]:
        cfg = TrainConfig(**kwargs)
        with pytest.raises(UserError) as e:
            cfg.check_metrics((), (), "Loop")
        msg = str(e.value)
        assert msg.startswith(f"{flag} '") and words in msg and "pass --trust_remote_code" in msg, msg
        TrainConfig(trust_remote_code=True, **kwargs).check_metrics((), (), "Loop")  # trusted: no refusal
    for kwargs in (dict(metrics="roc_auc"), dict(metric="evaluate-metric/bleu"), dict(metrics="nothere/nothere.py")):
        TrainConfig(**kwargs).check_metrics((), (), "Loop")  # evaluate's own, or nothing that runs
    TrainConfig(metrics="someone/metric").check_metrics(("someone/metric",), (), "Loop")  # a variant's own: computed
    assert not (tmp_path / "ran").exists()
    line = scores.describe_code(["roc_auc", "mine", "someone/metric", "nothere.py"])
    assert line == (f"metrics: loading evaluate-metric/roc_auc (evaluate's own module, from the Hub or its cache), "
                    f"{script} (a local script), someone/metric (a module from the Hub): their Python code runs on "
                    f"this machine")


@pytest.mark.slow  # ~6 s: processes of its own
def test_a_metric_script_named_by_a_config_file_is_refused_without_trust_remote_code(tiny_model, tiny_data, tmp_path):
    """The audit's shared recipe: `metrics: [accuracy, path/to/evilmetric.py]` ran the script, unsaid."""
    marker = tmp_path / "ran"
    script = metric_script(str(tmp_path / "evilmetric"), marker)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"metrics: [accuracy, {script}]\n")
    out = str(tmp_path / "out")
    args = ["--config", str(recipe)] + tiny_args(tiny_model, tiny_data, out, max_steps=2, eval_steps=2)
    line = fails(args, out, f"--metrics '{script}' is a local metric script", "pass --trust_remote_code",
                 "a --config file", alone=True)
    assert not marker.exists(), line


@pytest.mark.slow  # 6-11 s on 2 cores: the quick loop stays under ~5 min
def test_a_trusted_metric_script_is_named_at_the_start_then_runs(tiny_model, tiny_data, tmp_path):
    marker = tmp_path / "ran"
    script = metric_script(str(tmp_path / "evilmetric"), marker)
    out = str(tmp_path / "out")
    proc = run_cli(tiny_args(tiny_model, tiny_data, out, max_steps=2, eval_steps=2, metrics=f"accuracy,{script}",
                             trust_remote_code="true", max_train_samples=64, max_eval_samples=32), how="python")
    lines = proc.stdout.splitlines()
    named = [i for i, x in enumerate(lines)
             if x == f"[loop] metrics: loading {script} (a local script): its Python code runs on this machine"]
    assert len(named) == 1 and named[0] < next(i for i, x in enumerate(lines) if "data:" in x), proc.stdout
    assert marker.read_text() == "metric code ran\n"
    with open(os.path.join(out, "metrics.jsonl")) as f:
        assert any("eval_evilmetric" in json.loads(x) for x in f), proc.stdout
