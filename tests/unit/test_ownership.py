"""Files made through sudo go to the invoking user (topologies/ownership.py)."""

from __future__ import annotations

import os
import pwd

import pytest

from topologies import ownership

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def nobody(monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    user = pwd.getpwnam("nobody")
    monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
    monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
    return user.pw_uid, user.pw_gid


def test_no_sudo_means_nobody_to_hand_over_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    assert ownership.invoking_user() is None


@needs_root
def test_bad_sudo_uid_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for uid in ("0", "abc", "", "4000000000"):  # root itself, not a number, empty, no such user
        monkeypatch.setenv("SUDO_UID", uid)
        monkeypatch.setenv("SUDO_GID", "0")
        assert ownership.invoking_user() is None


@needs_root
def test_run_folder_and_its_new_parents_change_owner_symlinks_not_followed(
        tmp_path, nobody: tuple[int, int]) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to give away")
    top = tmp_path / "results"
    run = top / "demo" / "20260101T000000Z-abcd"
    (run / "raw").mkdir(parents=True)
    (run / "raw" / "data.csv").write_text("x\n")
    (run / "link").symlink_to(outside)
    ownership.hand_over_at_exit(run, top)
    ownership.hand_over_pending()
    for path in (top, top / "demo", run, run / "raw", run / "raw" / "data.csv"):
        assert (path.stat().st_uid, path.stat().st_gid) == nobody, path
    assert os.lstat(run / "link").st_uid == nobody[0]
    assert outside.stat().st_uid == 0  # the symlink's target keeps its owner
    assert tmp_path.stat().st_uid == 0  # above the results root: untouched
