"""Running a child as another user: the daemon starts as root, its children must not."""

import grp
import os
import pwd
import shutil
from pathlib import Path

from boottorrentd.errors import BootTorrentError


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


def shared_folder(path: Path, user: str | None) -> int:
    """Make `path` a folder that the daemon and a child running as `user` may both write:
    the daemon's (root's) own, in `user`'s primary group, 0770. For None: the daemon's
    alone, 0700. Returns the group's id (-1 for None) for the files the daemon writes
    there that the child must read (no set-group-ID folder: RestrictSUIDSGID= in the
    unit refuses that mode).

    The daemon never takes ownership of another user's files: the hardened unit keeps
    neither CAP_CHOWN nor CAP_DAC_OVERRIDE and gives the daemon the group instead
    (SupplementaryGroups=), which is all that changing a file's group to it needs.
    Raises BootTorrentError naming the fix when the daemon is not in that group.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is None:
        path.chmod(0o700)
        return -1
    gid = pwd.getpwnam(user).pw_gid
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        group = grp.getgrgid(gid).gr_name
        raise BootTorrentError(
            f"cannot share {path} with children.user {user!r}: the daemon is not in its "
            f"group {group!r}; add it ('systemctl edit boottorrentd', then [Service] "
            f"SupplementaryGroups={group}) or leave children.user unset") from None
    path.chmod(0o770)
    return gid
