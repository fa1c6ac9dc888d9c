"""Progress of an evaluation: a bar on a terminal, plain lines in a log, nothing when asked for silence."""

from __future__ import annotations

import io

import torch

from gradguard.progress import LineProgress, work_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_at_each_tenth_and_after_a_quiet_while() -> None:
    lines: list[str] = []
    now = [0.0]
    p = LineProgress(100, "eps=0.3 apgd-ce", lines.append, every_s=30, clock=lambda: now[0])
    for _ in range(9):
        now[0] += 1.0
        p.update(5)  # 5, 10, ..., 45 points: a line at 10, 20, 30, 40
    assert len(lines) == 4
    assert lines[0] == "eps=0.3 apgd-ce: 10/100 points (10%), 2 s, about 18 s left"
    now[0] += 100.0
    p.update(1)  # 46 points: no new tenth, but 100 s of silence
    assert len(lines) == 5 and lines[-1].startswith("eps=0.3 apgd-ce: 46/100 points (46%)")
    p.update(54)  # the end is the caller's own line
    assert len(lines) == 5


def test_a_terminal_gets_a_bar_and_a_log_gets_lines() -> None:
    term = _Terminal()
    bar = work_progress(10, "eps=0.3 square", print, stream=term)
    bar.update(3)
    bar.refresh()  # tqdm redraws at most every 0.1 s
    bar.close()
    assert "eps=0.3 square" in term.getvalue() and "3/10" in term.getvalue()

    lines: list[str] = []
    log = io.StringIO()  # not a terminal
    p = work_progress(10, "eps=0.3 square", lines.append, stream=log)
    p.update(3)
    p.close()
    assert log.getvalue() == "" and lines == ["eps=0.3 square: 3/10 points (30%), 0 s, about 0 s left"]

    silent = work_progress(10, "x", None, stream=term)  # no sink: --quiet, other ranks, the API's default
    silent.update(5)
    assert not isinstance(silent, LineProgress)


def test_evaluate_reports_progress_per_attack_off_a_terminal(capsys) -> None:
    from gradguard.evaluation import evaluate

    def identity(eps: float):
        def attack(model, x, y):
            return x

        attack.eps = eps  # type: ignore[attr-defined]
        return attack

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0: every point clean-correct
    x, y = torch.rand(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)
    lines: list[str] = []
    evaluate(model, x, y, {"noop": identity}, [0.1], batch_size=2, run_checks=False, progress=lines.append)
    points = [line for line in lines if "points (" in line]
    assert [p.split(":")[1].split("(")[0].strip() for p in points] == [
        "2/10 points", "4/10 points", "6/10 points", "8/10 points"]
    assert all(p.startswith("eps=0.1 noop: ") for p in points)
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest: no bar drawn
