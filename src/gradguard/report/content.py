"""What a report says: one run in full, or several runs side by side."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradguard.intervals import accuracy_interval, differs, format_interval
from gradguard.report.document import Block, Code, Document, Flags, Heading, Image, Paragraph, Table
from gradguard.report.plots import line_plot
from gradguard.report.records import RunRecord, ran_quick
from gradguard.report.reference import matching_curves

__all__ = ["run_document", "comparison_document", "run_labels"]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _pct_ci(v: float | None, n: int | None) -> str:
    """An accuracy in % with its 95% Wilson interval, "93.50 [90.1, 95.8]" (recomputed from the count, so records
    written before intervals were stored get them too)."""
    if v is None or not n:
        return _pct(v)
    return f"{_pct(v)} {format_interval(accuracy_interval(v, int(n)))}"


def _versus(a: float | None, b: float | None, n_a: int, n_b: int) -> str:
    """How `a` compares with `b`, called a difference only when their 95% intervals do not overlap."""
    if a is None or b is None:
        return "n/a"
    if not differs(a, b, n_a, n_b):
        return "no difference at 95%"
    return "higher" if a > b else "lower"


def _num(v: Any, fmt: str = "{:,.0f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _dataset_line(r: RunRecord) -> str:
    ds = r.results.get("dataset", {})
    text = f"Dataset `{ds.get('name')}` from {ds.get('source')}."
    if ds.get("lossy"):
        text += (" **This is the lossy JPEG copy of CIFAR-10** (PSNR 27-33 dB): accuracies are close to, not equal"
                 " to, published CIFAR-10 figures; compare methods within this copy.")
    return text


def _protocol_line(ev: dict[str, Any]) -> str:
    quick = ran_quick(ev)
    suite = f"`{ev.get('suite')}`" + (" (quick)" if quick else "")
    text = (f"Evaluation on {ev.get('n')} test images, {ev.get('norm')} threat model, suite {suite} "
            f"({ev.get('mode')} worst case), seed {ev.get('seed')}.")
    if quick:
        text += (" **Quick suite**: the reduced CPU setting (20 instead of 100 APGD steps, 500 instead of 5000 Square"
                 " queries, 3 instead of 9 APGD-T targets where the suite has APGD-T), for smoke runs; it overstates"
                 " robust accuracy, so report the full suite (`eval.quick = false`).")
    if ev.get("randomized"):
        text += (f" Randomized model: predictions average m={ev.get('m')} draws; gradient attacks use EOT over "
                 f"k={ev.get('k')} draws; a point counts as robust only if the m-draw prediction stays correct.")
    else:
        text += f" Deterministic model (m={ev.get('m')}, k={ev.get('k')})."
    return text


_CUMULATIVE_NOTE = ("* cumulative (chained evaluation): robust accuracy after this attack and all before it, each "
                    "attack having run only on the points still robust")


def _attack_header(name: str, cumulative: set[str]) -> str:
    return f"{name}*" if name in cumulative else name


def _accuracy_table(r: RunRecord) -> Table:
    ev = r.evaluation
    n = ev.get("n")
    per_attack = r.attack_accuracy()
    cumulative = r.cumulative_attacks()
    header = ["eps", "clean", *(_attack_header(a, cumulative) for a in per_attack), "worst case"]
    rows = []
    for i, eps in enumerate(ev.get("eps", [])):
        rows.append([f"{eps:g}", _pct_ci(ev.get("clean_accuracy"), n),
                     *[_pct_ci(v[i] if i < len(v) else None, n) for v in per_attack.values()],
                     _pct_ci(ev["robust_accuracy"][i], n)])
    caption = ("accuracy in % with its 95% Wilson interval on the n test images (per attack: its own robust "
               "accuracy where every point was attacked; worst case: the share of images robust to every attack)")
    if cumulative & set(per_attack):
        caption += "; " + _CUMULATIVE_NOTE
    return Table(header, rows, caption=caption)


def _flags(ev: dict[str, Any]) -> Flags:
    return Flags([(f["name"], bool(f["triggered"]), f["message"]) for f in ev.get("flags", [])])


def _environment_table(env: dict[str, Any]) -> Table:
    rows = [[k, str(v)] for k, v in env.items() if not isinstance(v, dict)]
    for k, v in env.items():
        if isinstance(v, dict):
            rows += [[f"{k}.{kk}", str(vv)] for kk, vv in v.items()]
    return Table(["field", "value"], rows)


def run_document(r: RunRecord, out_dir: Path) -> Document:
    """One run in full: what ran, robust accuracy, masking checks, training curves, gradients, environment."""
    doc = Document(f"gradguard run: {r.name}")
    doc.add(*_run_overview(r))
    doc.add(*_robustness_section(r, out_dir))
    doc.add(*_training_section(r, out_dir))
    doc.add(*_gradient_section(r.results.get("gradient_statistics"), out_dir))
    doc.add(Heading("Environment"), _environment_table(r.results.get("environment", {})))
    if r.config_text:
        doc.add(Heading("Config"), Code(r.config_text.rstrip()))
    return doc


def _run_overview(r: RunRecord) -> list[Block]:
    """The opening lines: the data, the model and its training cost, and the command that reproduces the run."""
    res, tr = r.results, r.training
    model = res.get("model", {})
    rand = model.get("randomization", "none")
    return [
        Paragraph(_dataset_line(r)),
        Paragraph(f"Model `{model.get('name')}`" + (f" randomized with `{rand}`" if rand != "none" else "")
                  + f", trained with recipe `{tr.get('recipe', {}).get('name', '?')}`, seed {res.get('seed')}: "
                  f"{_num(tr.get('wall_s'), '{:,.1f}')} s of training, {_num(tr.get('fb_passes'))} forward+backward "
                  f"passes (validation excluded)." + _inference_note(model.get("inference"))),
        Paragraph(f"Reproduce: `{res.get('command')}` (run on {res.get('machine')}, {res.get('date')})."),
    ]


def _inference_note(inference: dict[str, Any] | None) -> str:
    """A network that moves its input at test time says so: its robustness is the purifier's and the backbone's."""
    if not inference:
        return ""
    fields = ", ".join(f"{k} {inference[k]}" for k in ("eps", "norm", "scale") if k in inference)
    return (f" At test time the network first moves its input ({inference.get('kind', 'purifier')}: {fields}); "
            "the evaluation adds attacks that bypass that step (see the masking checks).")


def _robustness_section(r: RunRecord, out_dir: Path) -> list[Block]:
    """The headline: how it was evaluated, the accuracy table, the masking checks and accuracy against eps."""
    ev = r.evaluation
    blocks: list[Block] = [Heading("Robust accuracy"), Paragraph(_protocol_line(ev)), _accuracy_table(r)]
    if ev.get("randomized"):
        n = ev.get("n")
        blocks.append(Paragraph(f"Clean accuracy (%, 95% interval): {_pct_ci(ev.get('clean_accuracy'), n)} with "
                                f"m={ev.get('m')} draws, {_pct_ci(ev.get('clean_accuracy_single'), n)} with a single "
                                "draw."))
    blocks += [Heading("Masking checks"), _flags(ev)]
    eps = ev.get("eps", [])
    if len(eps) > 1:
        series = {name: (eps, [v if v is not None else float("nan") for v in accs])
                  for name, accs in r.attack_accuracy().items()}
        series["worst case"] = (eps, ev["robust_accuracy"])
        png = line_plot(out_dir / "robust_vs_eps.png", series, title="robust accuracy against epsilon",
                        xlabel="epsilon", ylabel="accuracy", ylim=(0, 1))
        if png:
            blocks.append(Image(png, "robust accuracy against epsilon"))
    return blocks


def _training_section(r: RunRecord, out_dir: Path) -> list[Block]:
    """The final and best checkpoints' validation, the loss curves and the time-to-robustness curves."""
    tr = r.training
    blocks: list[Block] = [Heading("Training")]
    final, best = tr.get("final_val") or {}, tr.get("best_val") or {}
    if final:
        checkpoints = [("final", final), ("best", best)] if best and best.get("step") != final.get("step") else [
            ("final (also the best)" if best else "final", final)]
        blocks.append(Table(["checkpoint", "step", "val clean %", "val robust %", "wall s", "fb passes"], [
            [label, str(v.get("step")), _pct(v.get("val_clean_acc")), _pct(v.get("val_robust_acc")),
             _num(v.get("wall_s"), "{:,.1f}"), _num(v.get("fb_passes"))]
            for label, v in checkpoints
        ], caption="robust validation on the held-out subset (the time-to-robustness log)"))
    train_recs = r.records("train")
    steps = [t["step"] for t in train_recs]
    for key, label in (("loss", "training loss"), ("acc", "training accuracy")):
        png = line_plot(out_dir / f"train_{key}.png", {label: (steps, [t.get(key, math.nan) for t in train_recs])},
                        title=label, xlabel="optimizer step", ylabel=key)
        if png:
            blocks.append(Image(png, label))
    return blocks + _time_to_robustness(r, out_dir)


def _time_to_robustness(r: RunRecord, out_dir: Path) -> list[Block]:
    """Validation accuracy against wall time and passes, beside the archived baselines for the same setting."""
    blocks: list[Block] = []
    vals = r.records("val")
    refs = matching_curves(r.results, vals)
    for xkey, xlabel in (("wall_s", "training wall seconds"), ("fb_passes", "forward+backward passes")):
        series = {"val robust": ([v[xkey] for v in vals], [v["val_robust_acc"] for v in vals]),
                  "val clean": ([v[xkey] for v in vals], [v["val_clean_acc"] for v in vals])}
        for ref in refs:  # the archived baselines, same network and validation attack
            series[f"{ref.label} (archived)"] = (getattr(ref, xkey), ref.robust)
        png = line_plot(out_dir / f"time_to_robustness_{xkey}.png", series, title="time to robustness",
                        xlabel=xlabel, ylabel="validation accuracy", ylim=(0, 1), logx=bool(refs))
        if png:
            blocks.append(Image(png, f"time to robustness ({xlabel})"))
    if refs:
        blocks.append(Paragraph("Archived curves: the baselines of the SGN convergence study (benchmarks/sgn_study.py) "
                                "with this network and validation attack, measured on " + "; ".join(
                                    sorted({f"{ref.label}: {ref.where}" for ref in refs})) +
                                ". Passes compare across machines; wall time is each machine's own."))
    return blocks


def _gradient_section(grads: dict[str, Any] | None, out_dir: Path) -> list[Block]:
    """GradDiv's statistics of a randomized model's input gradients, when the run measured them."""
    if not grads:
        return []
    blocks: list[Block] = [
        Heading("Gradient concentration"),
        Paragraph(f"Over {grads['n_inputs']} test inputs and {grads['n_draws']} draws per input: mean "
                  f"resultant length {grads['mean_resultant_length']:.4f} (isotropic floor "
                  f"{grads['mrl_isotropic']:.4f}), kappa {grads['kappa']:.2f}, mean pairwise cosine "
                  f"{grads['mean_pairwise_cosine']:.4f}."),
    ]
    eot = grads.get("eot_cosine") or {}
    if eot:
        ks = sorted(int(k) for k in eot)
        blocks.append(Table(["EOT draws k", "cosine to a fresh draw"], [[str(k), f"{eot[str(k)]:.4f}"] for k in ks]))
        png = line_plot(out_dir / "eot_cosine.png", {"": (ks, [eot[str(k)] for k in ks])},
                        title="EOT proxy gradient vs a fresh draw", xlabel="EOT draws k", ylabel="mean cosine",
                        logx=True)
        if png:
            blocks.append(Image(png, "cosine between the k-draw EOT gradient and fresh single-draw gradients"))
    return blocks


def run_labels(runs: Sequence[RunRecord]) -> list[str]:
    """One label per run, from its folder: two runs of one config (different `--out`) stay two runs. Equal folder
    names take their parent folders too (`a/seed0`, `b/seed0`), and an index when even the paths are equal."""
    parts = [Path(r.run_dir).resolve().parts for r in runs]
    depth = 1
    labels = [p[-1] for p in parts]
    while len(set(labels)) < len(labels) and depth < max(len(p) for p in parts):
        depth += 1
        labels = ["/".join(p[-depth:]) for p in parts]
    if len(set(labels)) < len(labels):  # the same folder given twice
        labels = [f"{p[-1]} ({i + 1})" for i, p in enumerate(parts)]
    return labels


def comparison_document(runs: Sequence[RunRecord], out_dir: Path) -> Document:
    labels = run_labels(runs)
    doc = Document("gradguard comparison: " + ", ".join(labels))
    eps_sets = {tuple(r.evaluation.get("eps", [])) for r in runs}
    attacks: list[str] = []
    cumulative: set[str] = set()
    for r in runs:
        attacks += [a for a in r.attack_accuracy() if a not in attacks]
        cumulative |= r.cumulative_attacks()
    base = runs[0].evaluation
    base_by_eps = dict(zip(base.get("eps", []), base.get("robust_accuracy", []), strict=False))
    header = ["run", "config", "recipe", "eps", "clean", *(_attack_header(a, cumulative) for a in attacks),
              "worst case", f"worst case vs {labels[0]}", "train wall s", "fb passes", "m", "k"]
    rows = []
    for label, r in zip(labels, runs, strict=True):
        ev, tr, acc = r.evaluation, r.training, r.attack_accuracy()
        n = ev.get("n")
        for i, eps in enumerate(ev.get("eps", [])):
            worst = ev["robust_accuracy"][i]
            versus = "-" if r is runs[0] else _versus(worst, base_by_eps.get(eps), int(n or 0), int(base.get("n") or 0))
            rows.append([label, r.name, tr.get("recipe", {}).get("name", "?"), f"{eps:g}",
                         _pct_ci(ev.get("clean_accuracy"), n),
                         *[_pct_ci(acc[a][i], n) if a in acc else "-" for a in attacks], _pct_ci(worst, n), versus,
                         _num(tr.get("wall_s"), "{:,.1f}"), _num(tr.get("fb_passes")), str(ev.get("m")),
                         str(ev.get("k"))])
    caption = ("accuracy in % with its 95% Wilson interval; a run is called higher or lower than "
               f"{labels[0]} only when the two intervals do not overlap")
    caption += "; " + _CUMULATIVE_NOTE if cumulative & set(attacks) else ""
    doc.add(Table(header, rows, caption=caption))
    if len(eps_sets) > 1:
        doc.add(Paragraph("Note: the runs were evaluated at different epsilons."))
    datasets = {r.results.get("dataset", {}).get("source") for r in runs}
    doc.add(Paragraph("Data: " + "; ".join(sorted(str(d) for d in datasets)) + "."))
    if any(r.results.get("dataset", {}).get("lossy") for r in runs):
        doc.add(Paragraph("At least one run used the lossy JPEG copy of CIFAR-10."))
    doc.add(Heading("Masking checks"))
    for label, r in zip(labels, runs, strict=True):
        trig = [f["name"] for f in r.evaluation.get("flags", []) if f["triggered"]]
        doc.add(Paragraph(f"`{label}`: " + (", ".join(f"**{t}**" for t in trig) if trig else "no flag raised")))
    for xkey, xlabel in (("wall_s", "training wall seconds"), ("fb_passes", "forward+backward passes")):
        series = {label: ([v[xkey] for v in r.records("val")], [v["val_robust_acc"] for v in r.records("val")])
                  for label, r in zip(labels, runs, strict=True)}
        png = line_plot(out_dir / f"time_to_robustness_{xkey}.png", series, title="time to robustness",
                        xlabel=xlabel, ylabel="robust validation accuracy", ylim=(0, 1))
        if png:
            doc.add(Image(png, f"robust validation accuracy against {xlabel}"))
    series = {label: (r.evaluation.get("eps", []), r.evaluation.get("robust_accuracy", []))
              for label, r in zip(labels, runs, strict=True)}
    if any(len(v[0]) > 1 for v in series.values()):
        png = line_plot(out_dir / "robust_vs_eps.png", series, title="worst-case robust accuracy",
                        xlabel="epsilon", ylabel="accuracy", ylim=(0, 1))
        if png:
            doc.add(Image(png, "worst-case robust accuracy against epsilon"))
    return doc
