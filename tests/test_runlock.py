"""One process per run folder: the lock is exclusive across processes, dies with its holder, and names it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradguard.atomic import atomic_write_bytes
from gradguard.runlock import LOCK_NAME, RunLockedError, hold_run_dir, run_dir_is_empty

HOLD = """
import sys, time
from gradguard.runlock import hold_run_dir
with hold_run_dir(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    """Another process that takes the lock on `folder` and keeps it until killed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_naming_the_first_and_a_killed_holder_frees_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    proc = _holder(folder)
    try:
        with pytest.raises(RunLockedError, match=rf"{folder}.*pid {proc.pid} on .*started"), hold_run_dir(folder):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with hold_run_dir(folder):  # the kernel dropped the dead holder's lock: no stale lock blocks
        pass


def test_the_lock_is_reentrant_in_one_process_and_released_on_exit(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with hold_run_dir(folder), hold_run_dir(folder):  # run_experiment holds it, then train takes it again
        assert (folder / LOCK_NAME).exists() and run_dir_is_empty(folder)
    proc = _holder(folder)  # released: another process can take it
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_taking_the_lock_removes_temporaries_of_killed_writes(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    leftovers = [folder / ".metrics.jsonl.k2j3.tmp", folder / "checkpoints" / ".last.safetensors.a8x_.tmp"]
    for f in leftovers:
        f.write_bytes(b"x" * 1000)
    atomic_write_bytes(folder / "checkpoints" / "last.safetensors", b"kept")
    with hold_run_dir(folder):
        assert not any(f.exists() for f in leftovers)
        assert (folder / "checkpoints" / "last.safetensors").read_bytes() == b"kept"


@pytest.mark.slow
def test_two_cli_runs_on_one_folder(tmp_path: Path) -> None:
    """The issue's case: `gradguard run CONFIG --out same` twice at once; the second exits non-zero at once."""
    config = tmp_path / "c.toml"
    config.write_text('name = "lock"\n[data]\ndataset = "digits"\nval_size = 100\n[model]\nname = "madry-cnn"\n'
                      '[train]\nepochs = 200\nbatch_size = 64\nprogress = false\nthreads = 1\n')
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "same"
    first = subprocess.Popen([sys.executable, "-m", "gradguard", "run", str(config), "--out", str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # start-up alone can take a minute on a loaded machine
        while not (out / "config.toml").exists():  # written under the lock, right after taking it
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "gradguard", "run", str(config), "--set", "seed=1",
                                 "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out.resolve()) in lines[0] and f"pid {first.pid}" in lines[0], second.stderr
    assert "seed = 1" not in (out / "config.toml").read_text()
