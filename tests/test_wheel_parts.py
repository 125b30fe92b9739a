"""benchmarks/wheel_parts.py: a wheel split into parts small enough for one device run each
comes back byte for byte, and a missing or altered part is named, not joined."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "wheel_parts.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def _wheel(path: Path) -> Path:
    # A real zip (as a wheel is) of incompressible bytes: 2.5 parts of 1 MB.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("pkg/data.bin", bytes(range(256)) * 10_000)
    return path


def test_split_and_join_give_back_the_wheel(tmp_path):
    wheel = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    done = _run("split", str(wheel), "--out", str(tmp_path / "parts"), "--part-mb", "1")
    assert done.returncode == 0, done.stderr
    listing = json.loads((tmp_path / "parts" / "parts.json").read_text())
    assert len(listing["parts"]) == 3 and all(p["bytes"] <= 1_000_000 for p in listing["parts"])
    assert "run 4: carry" in done.stdout and "wheel_parts.py join" in done.stdout
    device = tmp_path / "device"  # what the runs moved there, one part each
    device.mkdir()
    for part in listing["parts"]:
        (tmp_path / "parts" / part["file"]).rename(device / part["file"])
    joined = _run(
        "join",
        str(device),
        "--check",
        str(tmp_path / "parts" / "parts.json"),
        "--out",
        str(tmp_path / "out"),
    )
    assert joined.returncode == 0, joined.stderr
    back = Path(joined.stdout.strip())
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(wheel.read_bytes()).digest()
    assert zipfile.ZipFile(back).read("pkg/data.bin") == bytes(range(256)) * 10_000


def test_a_missing_or_altered_part_is_named_and_nothing_is_joined(tmp_path):
    wheel = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    _run("split", str(wheel), "--out", str(tmp_path / "parts"), "--part-mb", "1")
    check = str(tmp_path / "parts" / "parts.json")
    part = tmp_path / "parts" / f"{wheel.name}.part001"
    part.write_bytes(b"x" + part.read_bytes()[1:])
    altered = _run("join", str(tmp_path / "parts"), "--check", check, "--out", str(tmp_path / "o"))
    assert altered.returncode != 0 and f"{part}: SHA-256" in altered.stderr
    part.unlink()
    missing = _run("join", str(tmp_path / "parts"), "--check", check, "--out", str(tmp_path / "o"))
    assert missing.returncode != 0 and f"{part}: missing" in missing.stderr
    assert not (tmp_path / "o" / wheel.name).exists()
