"""One way to run the commands that build a lab: a failure says which command and why."""

import subprocess


class CommandError(RuntimeError):
    """A command failed; the message holds the command line and what it printed."""


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `cmd`, capture its output as text; with check, raise CommandError on failure."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(cmd)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()}")
    return result
