"""`gradguard run` end to end on the offline digits set: train, evaluate, record, report; no silent overwrite."""

from __future__ import annotations

import json

import pytest

from gradguard.cli import main
from gradguard.config import load_config
from gradguard.evaluation import EvalResult
from gradguard.report import RESULTS_SCHEMA, load_run, write_comparison
from gradguard.runner import RunExistsError, run_experiment

CONFIG = """
name = "tiny"
seed = 0
[data]
dataset = "digits"
val_size = 200
[model]
name = "madry-cnn"
[train]
recipe = "standard"
epochs = 1
batch_size = 64
lr = 0.05
eps = 0.1
val_attack_steps = 3
progress = false
[eval]
suite = "standard"
eps = [0.05, 0.3]
n = 30
quick = true
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    config = root / "tiny.toml"
    config.write_text(CONFIG)
    out = run_experiment(config, run_dir=root / "run", command="gradguard run tiny.toml")
    return config, out


@pytest.mark.slow
def test_run_writes_every_artifact(finished_run):
    _, out = finished_run
    for name in ("config.toml", "metrics.jsonl", "model.safetensors", "evaluation.json", "results.json",
                 "report.md", "report.html", "train_loss.png", "time_to_robustness_wall_s.png", "robust_vs_eps.png"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == RESULTS_SCHEMA
    assert results["command"] == "gradguard run tiny.toml"
    assert results["dataset"]["name"] == "digits" and results["dataset"]["n_eval"] == 30
    assert results["training"]["fb_passes"] > 0 and results["environment"]["torch"]
    assert results["dataset"]["lossy"] is False and "scikit-learn" in results["dataset"]["source"]
    assert results["dataset"]["verification"] and results["dataset"]["checksums"]


@pytest.mark.slow
def test_results_agree_with_evaluation_and_report(finished_run):
    _, out = finished_run
    evaluation = EvalResult.load(out / "evaluation.json")
    record = load_run(out)
    assert record.evaluation["robust_accuracy"] == evaluation.robust_accuracy
    worst = f"| 0.3 | {100 * evaluation.clean_accuracy:.2f} ["
    assert worst in (out / "report.md").read_text()
    assert evaluation.robust_accuracy[1] <= evaluation.robust_accuracy[0]
    # the config asks for the quick suite: every place that shows the numbers says so
    assert evaluation.suite_label == "standard (quick)" and "suite=standard (quick)" in evaluation.summary()
    report = (out / "report.md").read_text()
    assert "suite `standard` (quick)" in report and "**Quick suite**" in report


@pytest.mark.slow
def test_existing_run_is_not_overwritten_and_resume_skips_finished_training(finished_run):
    config, out = finished_run
    with pytest.raises(RunExistsError, match="--resume"):
        run_experiment(config, run_dir=out)
    metrics_before = (out / "metrics.jsonl").read_text()
    # the command as the fixture's, so the later tests on this shared run still read "gradguard run tiny.toml"
    run_experiment(load_config(config), run_dir=out, resume=True, command="gradguard run tiny.toml")
    assert (out / "metrics.jsonl").read_text() == metrics_before  # no retraining


@pytest.mark.slow
def test_comparison_report_and_cli(finished_run, tmp_path):
    _, out = finished_run
    page = write_comparison([out, out], tmp_path / "cmp")
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert page.exists() and md.count("| tiny | standard | 0.05 |") == 2
    assert main(["report", str(out)]) == 0


def test_report_of_unfinished_run_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        load_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 1


@pytest.mark.slow
def test_results_table_is_built_from_archived_results(finished_run, tmp_path):
    from gradguard.report.results_table import archive_results, write_results_table

    _, out = finished_run
    archived = archive_results(out, tmp_path / "archive")
    slim = json.loads(archived.read_text())
    assert "success" not in slim["evaluation"]
    table = write_results_table(tmp_path / "archive", tmp_path / "results.md").read_text()
    acc = json.loads((out / "results.json").read_text())["evaluation"]["robust_accuracy"]
    assert f"0.3: {100 * acc[1]:.1f}" in table and "`gradguard run tiny.toml`" in table
    assert "| standard (quick) n=30 m=1 k=1 |" in table


def _archived(name: str, lossy: bool) -> dict:
    return {"schema": RESULTS_SCHEMA, "name": name, "command": "c", "machine": "m", "date": "d",
            "dataset": {"name": "cifar10", "lossy": lossy, "source": "s"}, "model": {"name": "cnn-bn"},
            "training": {"recipe": {"name": "fast_at"}, "wall_s": 1.0},
            "evaluation": {"eps": [0.03], "robust_accuracy": [0.25], "clean_accuracy": 0.5, "suite": "custom",
                           "n": 1000, "m": 1, "k": 1, "flags": []}}


@pytest.mark.parametrize("lossy", [True, False])
def test_results_table_marks_runs_on_the_lossy_cifar_copy(tmp_path, lossy):
    from gradguard.report.results_table import write_results_table

    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "a.json").write_text(json.dumps(_archived("a", lossy)))
    table = write_results_table(tmp_path / "archive", tmp_path / "results.md").read_text()
    assert ("| cifar10 (lossy JPEG copy, PSNR 27-33 dB) |" in table) is lossy
    assert ("read the lossy JPEG copy of CIFAR-10" in table) is lossy
    assert "| cifar10 |" in table or lossy


def test_machine_line_names_the_training_threads_when_they_differ():
    from gradguard.runner import _machine

    env = {"device": "cpu", "machine": "x86_64", "processor_count": 2, "torch_threads": 2}
    assert _machine(env, 1) == "cpu (x86_64), 2 CPU cores, torch threads: 1 training, 2 evaluation"
    assert _machine(env, 2) == _machine(env, None) == "cpu (x86_64), 2 CPU cores, 2 torch threads"
    assert _machine(env, 1, 1) == "cpu (x86_64), 2 CPU cores, 1 torch threads"
    assert _machine(env, 2, 1) == "cpu (x86_64), 2 CPU cores, torch threads: 2 training, 1 evaluation"


def test_resume_of_a_finished_run_refuses_a_different_training_config(tmp_path):
    """A finished run re-evaluated under another config would record a training its model never had."""
    from gradguard.config import ConfigError, parse_config, save_config

    own = load_config_text(tmp_path, CONFIG)
    out = tmp_path / "run"
    save_config(own, out / "config.toml")
    (out / "train_summary.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"")  # never read: the check comes first
    other = parse_config({**own.model_dump(mode="json"), "train": {**own.train.model_dump(mode="json"), "lr": 0.5}})
    with pytest.raises(ConfigError, match=r"train\.lr"):
        run_experiment(other, run_dir=out, resume=True)
    assert main(["run", str(tmp_path / "tiny.toml"), "--set", "model.name=smallcnn", "--resume", str(out)]) == 1


def load_config_text(tmp_path, text):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return load_config(path)


def test_a_run_config_evaluates_like_its_source():
    """The run's config.toml (dump_config) must evaluate as the file it came from: an unset eval.k means the
    suite's default (20 EOT draws for 'rand'), not the 1 a dumped default would force."""
    from gradguard.config import dump_config, parse_config
    from gradguard.runner import evaluation_settings

    cfg = parse_config({"model": {"randomization": "noise"}, "eval": {"suite": "rand"}})
    again = parse_config(__import__("tomllib").loads(dump_config(cfg)))
    assert evaluation_settings(again) == evaluation_settings(cfg)
    assert evaluation_settings(cfg)["k"] is None  # evaluate() then uses SUITE_DEFAULT_K["rand"] == 20
