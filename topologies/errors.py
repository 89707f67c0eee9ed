"""The errors a user may see, and the exit code each one maps to (README "Exit codes").

Anticipated failures raise one of these with a one-line message; the CLI prints that line and
exits with the class's ``exit_code``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run started and failed: a component died, a disk filled, a timeout
EXIT_CONFIG = 2  # bad input or a missing prerequisite: nothing was started
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM


class UserError(Exception):
    """Bad input or a missing prerequisite, found before anything was started (exit 2)."""

    exit_code = EXIT_CONFIG


class RunFailed(Exception):
    """A run that had started failed; the message names the cause and where its log is (exit 1)."""

    exit_code = EXIT_RUN_FAILED

    def __init__(self, message: str, component: str | None = None, log_path: str | None = None) -> None:
        self.component = component
        self.log_path = log_path
        super().__init__(message)
