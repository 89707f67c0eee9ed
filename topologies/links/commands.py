"""Running the system tools the link engine drives (``ip``, ``tc``, the C compiler), and their versions."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

from topologies.errors import RunFailed


class CommandFailed(RunFailed, RuntimeError):
    """A system tool (``ip``, ``tc``, ...) failed, hung or is missing: one line, exit 1."""


COMMAND_TIMEOUT_S = 30.0  # no ip/tc call takes this long unless something is stuck


def run_cmd(argv: list[str], stdin: str | None = None, cwd: Path | None = None,
            timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """Run ``argv`` (``stdin`` fed to it); return its stdout, or raise CommandFailed with its
    stderr (also when the tool is missing or does not finish within ``timeout_s``)."""
    tool = next((a for a in argv if not a.startswith("-") and a not in ("nsenter", "--")
                 and not a.startswith("--net=")), argv[0])
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd,
                                timeout=timeout_s)
    except FileNotFoundError:
        raise CommandFailed(f"{argv[0]}: command not found (./bootstrap.sh installs it)",
                            component=tool) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{' '.join(argv)}: no answer within {timeout_s:g} s",
                            component=tool) from None
    if result.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}",
                            component=tool)
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
    compiler = (subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10).stdout
                if cc else "")
    ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True, timeout=10).stdout.strip()
    return {"kernel": platform.release(), "compiler": compiler.splitlines()[0] if compiler else None,
            "iproute2": ip_version, "python": sys.version.split()[0]}
