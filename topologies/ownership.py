"""Files a root process creates on behalf of a user who ran it through sudo belong to that user.

``make demo`` as a normal user runs the emulator as root through sudo (namespaces and OVS need
root). Without this, ``results/``, figures and build caches would be owned by root and the user
could not delete their own results. Call :func:`hand_over_at_exit` for every folder or file a
command creates; when the process exits, each one (recursively, never following symlinks) is
given to the invoking user (``SUDO_UID``/``SUDO_GID``). Without sudo nothing changes.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
from pathlib import Path

log = logging.getLogger(__name__)
_pending: list[tuple[Path, Path | None]] = []  # (path, top) to hand over at exit


def invoking_user() -> tuple[int, int] | None:
    """``(uid, gid)`` of the user who started us through sudo, if we run as root; else None."""
    if os.geteuid() != 0:
        return None
    uid_text, gid_text = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    if not (uid_text.isdigit() and gid_text.isdigit()):
        return None
    uid, gid = int(uid_text), int(gid_text)
    if uid == 0:
        return None
    try:
        pwd.getpwuid(uid)
    except KeyError:  # a SUDO_UID naming no user: do not hand files to a stranger's uid
        return None
    return uid, gid


def hand_over(path: Path, user: tuple[int, int] | None = None) -> int:
    """Give ``path`` (and, for a folder, everything below it) to the invoking user.

    Symlinks are changed themselves, never followed. Returns how many entries changed owner.
    """
    user = user or invoking_user()
    if user is None or not os.path.lexists(path):
        return 0
    uid, gid = user
    changed = 0

    def give(entry: str) -> None:
        nonlocal changed
        try:
            st = os.lstat(entry)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(entry, uid, gid, follow_symlinks=False)
                changed += 1
        except OSError as exc:  # vanished, or a read-only mount: keep going
            log.debug("could not hand %s over: %s", entry, exc)

    give(str(path))
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, dirs, files in os.walk(path, followlinks=False):
            for name in dirs + files:
                give(os.path.join(folder, name))
    return changed


def hand_over_with_parents(path: Path, top: Path, user: tuple[int, int] | None = None) -> int:
    """:func:`hand_over` ``path`` and each root-owned folder between it and ``top`` (inclusive).

    For run folders: ``results/<experiment>/<run>`` created by root also made ``results/<experiment>``.
    """
    user = user or invoking_user()
    if user is None:
        return 0
    changed = hand_over(path, user)
    path, top = Path(os.path.abspath(path)), Path(os.path.abspath(top))
    parent = path.parent
    while parent != parent.parent and (parent == top or top in parent.parents):
        try:
            if os.lstat(parent).st_uid == 0 and not parent.is_symlink():
                os.chown(parent, *user, follow_symlinks=False)
                changed += 1
        except OSError:
            pass
        if parent == top:
            break
        parent = parent.parent
    return changed


def hand_over_at_exit(path: Path, top: Path | None = None) -> None:
    """Hand ``path`` (and root-owned folders up to ``top``) over when the process exits, also
    after an error or Ctrl-C. No-op unless we run as root through sudo."""
    if invoking_user() is None:
        return
    if not _pending:
        atexit.register(hand_over_pending)
    _pending.append((Path(path), None if top is None else Path(top)))


def pending() -> list[tuple[Path, Path | None]]:
    """What will be handed over at exit: ``(path, top)`` pairs, in registration order."""
    return list(_pending)


def hand_over_pending() -> None:
    """Hand over everything registered so far (atexit calls this; tests may too)."""
    while _pending:
        path, top = _pending.pop()
        if top is not None:
            hand_over_with_parents(path, top)
        else:
            hand_over(path)
