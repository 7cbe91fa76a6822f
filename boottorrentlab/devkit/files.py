"""Checking copies: what a downloaded or built file hashes to."""

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    """The file's SHA-256 as hex, read in chunks (an OS image may not fit in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
