"""The test session's own isolation (tests/conftest.py): a private dataset cache, for this process and its children."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import USER_CACHE


def test_the_dataset_cache_is_a_temporary_folder(tmp_path_factory) -> None:
    from gradguard.data.cache import cache_root

    here = Path(cache_root()).resolve()
    assert here.is_relative_to(tmp_path_factory.getbasetemp().resolve())
    assert here != Path(USER_CACHE or Path.home() / ".cache" / "gradguard").resolve()
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['GRADGUARD_CACHE'])"],
                           capture_output=True, text=True, check=True, env=os.environ.copy())
    assert Path(child.stdout.strip()).resolve() == here
