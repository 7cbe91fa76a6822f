"""Pieces of error messages shared by the daemon's config and the OSes' config.yaml."""

import difflib
from collections.abc import Iterable


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known word, or ''."""
    matches = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def describe(value: object) -> str:
    """A short description of a YAML value for 'got ...' in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def write_eg(line: str) -> str:
    """'write e.g. "key: value"', quoted so that quotes inside the line stay readable."""
    return f"write e.g. '{line}'" if '"' in line else f'write e.g. "{line}"'
