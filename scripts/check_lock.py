"""Compares the Python environment running this script with a lock file: the packages and versions installed
against those pinned. Prints every difference, or one line saying they match.

    python scripts/check_lock.py [--lock requirements/tunelens.lock] [--strict] [--versions]

--strict exits 1 on any difference (a test runs this on .venv); --versions also prints every installed version
(`make test-latest` prints what the newest releases resolved to, against the lock). tunelens itself, installed from
the checkout, is not in the lock.
"""
from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCK = ROOT / "requirements" / "tunelens.lock"
LOCK_PYTHON = (3, 11)  # requirements/lock.sh resolves for this Python
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
NOT_LOCKED = {"tunelens"}


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """{normalised name: version} of every pin in a lock file."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """{normalised name: version} of every distribution this interpreter sees, tunelens itself left out."""
    found = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {name: version for name, version in found.items() if name not in NOT_LOCKED}


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One sentence per package that is missing, not in the lock, or at another version."""
    out = []
    for name in sorted(pins.keys() | have.keys()):
        want, got = pins.get(name), have.get(name)
        if want == got:
            continue
        if got is None:
            out.append(f"{name} {want} is locked but not installed")
        elif want is None:
            out.append(f"{name} {got} is installed but not in the lock")
        else:
            out.append(f"{name}: locked {want}, installed {got}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK)
    parser.add_argument("--strict", action="store_true", help="exit 1 on any difference")
    parser.add_argument("--versions", action="store_true", help="also print every installed version")
    args = parser.parse_args(argv)
    have = installed()
    if args.versions:
        print(f"Python {sys.version.split()[0]}; installed:")
        for name, version in sorted(have.items()):
            print(f"  {name}=={version}")
    found = differences(locked(args.lock), have)
    if sys.version_info[:2] != LOCK_PYTHON:
        found.insert(0, f"Python {sys.version_info[0]}.{sys.version_info[1]} runs this; the lock is for "
                        f"{LOCK_PYTHON[0]}.{LOCK_PYTHON[1]}")
    rel = args.lock.resolve().relative_to(ROOT) if args.lock.resolve().is_relative_to(ROOT) else args.lock
    if not found:
        print(f"The environment matches {rel} ({len(have)} packages).")
        return 0
    print(f"The environment differs from {rel} in {len(found)} place(s):")
    for line in found:
        print(f"  {line}")
    return 1 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
