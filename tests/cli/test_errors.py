"""Every `veil` error is one line on stderr: exit 2 when the input was wrong, 1 when the work failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VEIL = str(Path(sys.executable).with_name("veil"))


def _veil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VEIL, *args], capture_output=True, text=True, timeout=120)


def test_unknown_role_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _veil("keys", "create", "--role", "bogus", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown role" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_id_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _veil("keys", "revoke", "no-such-key", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_unusable_data_dir_is_one_line_and_exit_1(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("not a directory")
    result = _veil("keys", "create", "--role", "trainer", "--data-dir", str(not_a_dir))
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
