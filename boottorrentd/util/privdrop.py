"""Running a child as another user: the daemon starts as root, its children must not."""

import pwd
import shutil


def setpriv_prefix(user: str | None) -> list[str]:
    """The argv prefix that runs a command as `user` with that user's own groups; [] for
    None (the command keeps the daemon's user).

    Raises KeyError when the user does not exist.
    """
    if user is None:
        return []
    entry = pwd.getpwnam(user)
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
