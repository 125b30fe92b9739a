"""Carry a wheel too big for one device run (NVIDIA DALI's, ~200 MB) in parts, and join it.

The device tool moves at most 64 MiB of ignored files per run (its `carry`), and a machine
kept warm between runs keeps what a run put outside the working tree. So the wheel is split
here into parts under PART_MB, each run carries one part and moves it into a folder on the
device, and the last run joins them, checks every part's and the whole wheel's SHA-256
against the list made here, and installs it. Standard library only: the device's Python has
no proteus installed when it joins.

    python benchmarks/wheel_parts.py split WHEEL --out .dali/parts     # here
    python benchmarks/wheel_parts.py join $HOME/dali-parts --check .dali/parts/parts.json \
        --out /tmp/dali                                                # there, after the parts

Any file splits: benchmarks/gpu_proof_dali.sh packs DALI's wheel and its dependencies into
one .tar and splits that. `split` prints the commands, one device run per part, in order
(docs/PERFORMANCE.md, "GPU proof").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

PART_MB = 59  # under the 60 MB a part may have, with the rest of the carry (64 MiB) to spare
CHUNK = 1 << 20


def split(wheel: Path, out: Path, part_mb: int = PART_MB) -> dict:
    """``wheel`` cut into ``out``/NAME.partNNN of at most ``part_mb`` MB each, and
    ``out``/parts.json listing each part's size and SHA-256 and the whole wheel's."""
    out.mkdir(parents=True, exist_ok=True)
    size = part_mb * 1_000_000
    whole = hashlib.sha256()
    parts = []
    with open(wheel, "rb") as source:
        while True:
            block = source.read(size)
            if not block:
                break
            whole.update(block)
            path = out / f"{wheel.name}.part{len(parts):03d}"
            path.write_bytes(block)
            parts.append(
                {
                    "file": path.name,
                    "bytes": len(block),
                    "sha256": hashlib.sha256(block).hexdigest(),
                }
            )
    listing = {"wheel": wheel.name, "sha256": whole.hexdigest(), "parts": parts}
    (out / "parts.json").write_text(json.dumps(listing, indent=2) + "\n")
    return listing


def join(folder: Path, check: Path, out: Path) -> Path:
    """The parts in ``folder`` joined into ``out``/WHEEL after checking each against the
    list ``check`` (a missing or altered part: an error naming it, and nothing written)."""
    listing = json.loads(check.read_text())
    for part in listing["parts"]:
        path = folder / part["file"]
        if not path.is_file():
            raise SystemExit(f"{path}: missing; carry it in a run before joining")
        digest = _sha256(path)
        if digest != part["sha256"]:
            raise SystemExit(f"{path}: SHA-256 {digest[:12]}… is not {part['sha256'][:12]}…")
    out.mkdir(parents=True, exist_ok=True)
    target = out / listing["wheel"]
    whole = hashlib.sha256()
    with open(target.with_suffix(".partial"), "wb") as sink:
        for part in listing["parts"]:
            with open(folder / part["file"], "rb") as source:
                while block := source.read(CHUNK):
                    whole.update(block)
                    sink.write(block)
    if whole.hexdigest() != listing["sha256"]:
        raise SystemExit(f"{target}: the joined wheel's SHA-256 differs from {check}'s")
    target.with_suffix(".partial").rename(target)
    return target


def device_commands(listing: dict, carried: str, kept: str = "$HOME/dali-parts") -> list[str]:
    """One device run per part (carry=[``carried``/PART]), then the join and the install."""
    lines = [
        f"# run {i + 1}: carry ['{carried}/{p['file']}']\n"
        f"mkdir -p {kept} && mv {carried}/{p['file']} {kept}/"
        for i, p in enumerate(listing["parts"])
    ]
    joined = f"{kept}/joined/{listing['wheel']}"
    if listing["wheel"].endswith(".tar"):  # a folder of wheels (gpu_proof_dali.sh)
        install = (
            f"mkdir -p {kept}/wheels && tar -xf {joined} -C {kept}/wheels && python3 -m pip "
            f"install -q --no-index --no-deps --target /tmp/site {kept}/wheels/*.whl"
        )
    else:
        install = f"python3 -m pip install --no-deps {joined}"
    lines.append(
        f"# run {len(lines) + 1}: carry ['{carried}/parts.json']\n"
        f"python3 benchmarks/wheel_parts.py join {kept} --check {carried}/parts.json --out "
        f"{kept}/joined && {install}"
    )
    return lines


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="cut WHEEL into parts of under PART_MB MB")
    cut.add_argument("wheel", type=Path)
    cut.add_argument("--out", type=Path, required=True, help="folder for the parts")
    cut.add_argument("--part-mb", type=int, default=PART_MB)
    glue = commands.add_parser("join", help="check the parts in FOLDER and join them")
    glue.add_argument("folder", type=Path)
    glue.add_argument("--check", type=Path, required=True, help="the parts.json split wrote")
    glue.add_argument("--out", type=Path, required=True, help="folder for the joined wheel")
    args = parser.parse_args(argv)
    if args.command == "split":
        if not args.wheel.is_file():
            parser.error(f"{args.wheel}: no such wheel (pip download it first)")
        listing = split(args.wheel, args.out, args.part_mb)
        print(f"{len(listing['parts'])} parts in {args.out}; on the device, in order:")
        print("\n".join(device_commands(listing, str(args.out))))
    else:
        print(join(args.folder, args.check, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
