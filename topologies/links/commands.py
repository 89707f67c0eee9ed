"""Running the system tools the link engine drives (``ip``, ``tc``, the C compiler), and their versions."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path


def run_cmd(argv: list[str], stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run ``argv`` (``stdin`` fed to it); return its stdout, or raise RuntimeError with its stderr."""
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def in_netns(argv: list[str], netns_pid: int | None) -> list[str]:
    """``argv`` run in the network namespace of process ``netns_pid`` (None: as it is, here)."""
    if netns_pid is None:
        return argv
    return ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "--", *argv]


def c_compiler() -> str | None:
    """Path of the C compiler (gcc, else cc), or None."""
    return shutil.which("gcc") or shutil.which("cc")


def tool_versions() -> dict[str, str | None]:
    """Kernel, C compiler, iproute2 and Python versions, for a run's metadata."""
    cc = c_compiler()
    compiler = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout if cc else ""
    ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip()
    return {"kernel": platform.release(), "compiler": compiler.splitlines()[0] if compiler else None,
            "iproute2": ip_version, "python": sys.version.split()[0]}
