"""A run folder that already holds a run: the ways to go on, a new folder beside it, replacing it; Ctrl-C's hint."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gradguard.config import dump_config, parse_config
from gradguard.rundir import RunExistsError, choose_run_dir, interrupted_message

NOW = datetime(2026, 12, 2, 8, 30, 5, tzinfo=UTC)


def _taken(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.toml").write_text("name = 'x'\n")
    return path


def test_a_free_folder_is_used_as_is(tmp_path: Path) -> None:
    assert choose_run_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert choose_run_dir(tmp_path / "empty") == tmp_path / "empty"


def test_a_taken_folder_says_how_to_go_on(tmp_path: Path) -> None:
    run = _taken(tmp_path / "r")
    with pytest.raises(RunExistsError) as err:
        choose_run_dir(run, command="gradguard train")
    for way in (f"`gradguard train --resume {run}`", "--out DIR", "--if-exists new", "--if-exists overwrite"):
        assert way in str(err.value)
    with pytest.raises(RunExistsError, match=f"`gradguard run c.toml --resume {run}`"):
        choose_run_dir(run, config="c.toml")


def test_new_puts_the_run_beside_the_old_one(tmp_path: Path) -> None:
    run = _taken(tmp_path / "r")
    first = choose_run_dir(run, "new", now=NOW)
    assert first == tmp_path / "r-20261202-083005" and (run / "config.toml").exists()
    _taken(first)
    assert choose_run_dir(run, "new", now=NOW) == tmp_path / "r-20261202-083005-2"


def test_overwrite_replaces_only_a_run_folder(tmp_path: Path) -> None:
    run = _taken(tmp_path / "r")
    assert choose_run_dir(run, "overwrite") == run and not run.exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match="does not look like a run folder"):
        choose_run_dir(other, "overwrite")
    assert (other / "todo.txt").exists()


def test_interrupted_messages_give_the_resume_command() -> None:
    assert interrupted_message("gradguard train", Path("runs/a")) == (
        "gradguard train: interrupted; continue with: gradguard train --resume runs/a")
    assert interrupted_message("gradguard run", "runs/a", "c.toml").endswith("gradguard run c.toml --resume runs/a")


def _config(tmp_path: Path) -> str:
    path = tmp_path / "c.toml"
    path.write_text(dump_config(parse_config({"name": "c", "data": {"dataset": "digits"}})))
    return str(path)


def test_ctrl_c_in_train_prints_the_resume_command(tmp_path, monkeypatch, capsys) -> None:
    import gradguard.training
    from gradguard.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradguard.training, "train", interrupted)
    assert main(["train", _config(tmp_path), "--out", str(tmp_path / "r")]) == 130
    assert f"continue with: gradguard train --resume {tmp_path / 'r'}" in capsys.readouterr().err


def test_run_if_exists_new_goes_beside_and_says_where(tmp_path, monkeypatch, capsys) -> None:
    import gradguard.runner
    from gradguard.cli import main

    taken = _taken(tmp_path / "r")
    seen: list[Path] = []
    monkeypatch.setattr(gradguard.runner, "run_experiment", lambda cfg, run_dir, **kw: seen.append(run_dir) or run_dir)
    assert main(["run", _config(tmp_path), "--out", str(taken)]) == 1
    assert "--if-exists new" in capsys.readouterr().err and not seen
    assert main(["run", _config(tmp_path), "--out", str(taken), "--if-exists", "new"]) == 0
    assert seen[0].name.startswith("r-") and seen[0].parent == tmp_path
    assert f"{taken} already holds a run (kept); this run goes to {seen[0]}" in capsys.readouterr().err
