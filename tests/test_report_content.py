"""What reports say, from hand-made run records (no training): labels by folder, cumulative columns, HTML markup."""

from __future__ import annotations

from pathlib import Path

from gradguard.report.content import comparison_document, run_document, run_labels
from gradguard.report.document import _inline_html
from gradguard.report.records import RESULTS_SCHEMA, RunRecord


def _record(run_dir: Path, *, name: str = "mnist-sgn-quick", robust: float = 0.4, best_step: int = 150,
            raised: bool = False) -> RunRecord:
    val = {"step": 150, "val_clean_acc": 0.98, "val_robust_acc": 0.5, "wall_s": 10.0, "fb_passes": 300}
    best = {**val, "step": best_step, "val_robust_acc": 0.6 if best_step != 150 else 0.5}
    evaluation = {
        "eps": [0.3], "norm": "linf", "suite": "standard", "mode": "chained", "n": 200, "seed": 0, "m": 1, "k": 1,
        "clean_accuracy": 0.98, "robust_accuracy": [robust], "meta": {"quick": True},
        "attacks": {"apgd-ce": {"robust_accuracy": [0.5], "cumulative_robust_accuracy": [0.5]},
                    "apgd-t": {"robust_accuracy": [None], "cumulative_robust_accuracy": [robust]}},
        "flags": [{"name": "gradient_free_stronger", "triggered": raised, "message": "Square beat **APGD**"}],
    }
    results = {"schema": RESULTS_SCHEMA, "name": name, "command": "gradguard run c.toml", "seed": 0,
               "dataset": {"name": "mnist", "source": "cache"}, "model": {"name": "smallcnn"},
               "training": {"recipe": {"name": "sgn"}, "final_val": val, "best_val": best, "wall_s": 10.0},
               "evaluation": evaluation}
    metrics = [{"kind": "train", "step": s, "loss": 1.0 / s, "acc": 0.5} for s in range(10, 160, 10)]
    metrics.append({"kind": "val", **val})
    return RunRecord(run_dir=run_dir, results=results, metrics=metrics)


def test_runs_of_one_config_keep_their_own_rows_and_curves(tmp_path: Path) -> None:
    a, b = _record(tmp_path / "runs" / "a", robust=0.4), _record(tmp_path / "runs" / "b", robust=0.7, raised=True)
    assert run_labels([a, b]) == ["a", "b"]
    doc = comparison_document([a, b], tmp_path / "cmp")
    md = doc.to_markdown(tmp_path / "cmp")
    assert "| a | mnist-sgn-quick | sgn | 0.3 |" in md and "| b | mnist-sgn-quick | sgn | 0.3 |" in md
    assert "40.00" in md and "70.00" in md
    assert "`a`: no flag raised" in md and "`b`: **gradient_free_stronger**" in md
    html = doc.to_html()
    assert "<strong>gradient_free_stronger</strong>" in html and "**" not in html


def test_equal_folder_names_are_told_apart() -> None:
    runs = [_record(Path("/x/seed0")), _record(Path("/y/seed0"))]
    assert run_labels(runs) == ["x/seed0", "y/seed0"]
    same = [_record(Path("/x/seed0")), _record(Path("/x/seed0"))]
    assert run_labels(same) == ["seed0 (1)", "seed0 (2)"]


def test_cumulative_columns_are_marked_in_markdown_and_html(tmp_path: Path) -> None:
    doc = run_document(_record(tmp_path / "r"), tmp_path / "r")
    md, html = doc.to_markdown(tmp_path / "r"), doc.to_html()
    assert "| eps | clean | apgd-ce | apgd-t* | worst case |" in md
    assert "<th>apgd-t*</th>" in html and "<th>apgd-ce</th>" in html
    assert "* cumulative (chained evaluation)" in html
    assert "<strong>Quick suite</strong>" in html and "**Quick suite**" in md and "**" not in html


def test_final_and_best_rows_do_not_repeat_one_checkpoint(tmp_path: Path) -> None:
    same = run_document(_record(tmp_path / "r"), tmp_path / "r").to_markdown(tmp_path / "r")
    assert "| final (also the best) | 150 |" in same and "| best |" not in same
    other = run_document(_record(tmp_path / "s", best_step=100), tmp_path / "s").to_markdown(tmp_path / "s")
    assert "| final | 150 |" in other and "| best | 100 |" in other


def test_training_plots_show_every_record_and_are_large(tmp_path: Path) -> None:
    import matplotlib.image

    run_document(_record(tmp_path / "r"), tmp_path / "r")
    height, width = matplotlib.image.imread(tmp_path / "r" / "train_loss.png").shape[:2]
    assert (width, height) == (840, 540)  # 7 x 4.5 inches at 120 dpi


def test_inline_markdown_subset() -> None:
    assert _inline_html("**bold** and `co**de**` & <b>") == (
        "<strong>bold</strong> and <code>co**de**</code> &amp; &lt;b&gt;")
    assert _inline_html("see [the docs](docs/sgn.md)") == 'see <a href="docs/sgn.md">the docs</a>'
    assert _inline_html("[x](javascript:alert(1))") == "[x](javascript:alert(1))"


def test_a_network_that_moves_its_input_says_so(tmp_path: Path) -> None:
    plain = _record(tmp_path / "plain")
    active = _record(tmp_path / "active")
    active.results["model"]["inference"] = {"kind": "sgn-active", "eps": 0.3, "norm": "linf", "scale": 0.25,
                                            "response_layers": 3}
    said = run_document(active, tmp_path).to_markdown(tmp_path)
    assert "moves its input (sgn-active: eps 0.3, norm linf, scale 0.25)" in said and "bypass" in said
    assert "moves its input" not in run_document(plain, tmp_path).to_markdown(tmp_path)
