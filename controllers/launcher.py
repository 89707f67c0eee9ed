"""Start the os-ken controller with the apps chosen by name (os-ken 4 ships no ``osken-manager``;
this plays the part of ``ryu-manager app1 app2``).

Command line (listens on a loopback address only)::

    python -m controllers.launcher --policy FILE --status FILE --port N [--host 127.0.0.1] \
        [--app slice_switch] [--app NAME_OR_MODULE ...]

``--app`` takes a name from the registry ``controllers.apps.APPS`` or a full dotted module path
(apps outside the package, e.g. in tests); repeat it to load several apps; default
``slice_switch``. An unknown app, a bad policy or a bad option fails with exit code 2 before
anything listens. The launcher exports ``FACTORYSAT_CTL_POLICY`` / ``FACTORYSAT_CTL_STATUS``
for the apps, sets os-ken's ``ofp_listen_host`` / ``ofp_tcp_listen_port`` and runs the apps
through os-ken's ``AppManager`` (see ``run_controller``). os-ken 4 uses its native (threading)
hub by default (``OSKEN_HUB_TYPE`` unset), so no eventlet monkey-patching is needed. Logs go to
stderr; ``ControllerProcess`` sends them to a file.

From Python (the runner)::

    ctl = ControllerProcess()
    ctl.start(policy_path, status_path, log_path, apps=["slice_switch"])  # sets ctl.pid, ctl.port
    ctl.wait_ready([1, 2], timeout_s=10)
    ...
    ctl.stop()
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from controllers.apps import DEFAULT_APPS, ENV_POLICY, ENV_STATUS, allowed_apps, resolve_apps
from controllers.policy import SlicePolicy
from topologies.errors import RunFailed
from topologies.paths import REPO_ROOT
from topologies.validate import ConfigError

__all__ = ["DEFAULT_APPS", "ControllerDied", "ControllerNotReady", "ControllerProcess",
           "check_app_classes", "free_loopback_port", "listening_inodes",
           "main", "ready_timeout_s", "resolve_apps", "run_controller", "tcp_listening"]

_POLL_S = 0.02
# Readiness timeout of a whole network (ready_timeout_s): userspace OVS brings ports up one by one
# and a 60-port bridge took > 30 s here under load (DESIGN.md, "Whole-emulator error under load");
# in the software-emulated VM-test guest the controller took > 38 s to install the flows of 3
# connected bridges (CI, 2026-12-02). A failure detector, not a timing claim: the base is generous.
READY_BASE_S = 90.0
READY_PER_SWITCH_S = 1.0
READY_PER_PORT_S = 0.25
READY_MAX_S = 600.0


class ControllerDied(RunFailed, RuntimeError):
    """The controller process exited (or reported errors) while the run needed it."""


class ControllerNotReady(RunFailed, TimeoutError):
    """Datapaths did not connect and get their flows in time."""


def ready_timeout_s(switches: int, ports: int) -> float:
    """How long to wait for ``switches`` datapaths with ``ports`` ports in all to become ready:
    90 s + 1 s per switch + 0.25 s per port, at most 600 s."""
    return min(READY_MAX_S, READY_BASE_S + READY_PER_SWITCH_S * switches + READY_PER_PORT_S * ports)


def run_controller(policy_path: Path, status_path: Path, port: int, host: str = "127.0.0.1",
                   app_modules: Sequence[str] | None = None) -> None:
    """Run os-ken with ``app_modules`` (from ``resolve_apps``; default: ``DEFAULT_APPS``) in this
    process; never returns.

    This is ``AppManager.run_apps`` minus its teardown: with os-ken 4.2.2's native hub,
    ``HubThread`` swallows every exception of a service thread (its ``TaskExit`` is ``Exception``)
    and ``run_apps``' cleanup calls a ``HubThread.kill`` that does not exist. So the listen port is
    checked here first, and if the OpenFlow server thread ends the process exits with code 1.
    After loading the modules it exits with code 2 if a module defines no app class or a listed
    app's class subclasses another listed one (both would install the same flows).
    """
    # Import os-ken here so `import controllers.launcher` stays light for the runner.
    from controllers.sdn import (  # os-ken, or Ryu 4.34 (FACTORYSAT_SDN)
        AppManager,
        cfg,
        controller,  # noqa: F401  (registers the ofp-* options)
        hub,
    )

    log = logging.getLogger("controllers.launcher")
    app_modules = list(app_modules) if app_modules is not None else resolve_apps(DEFAULT_APPS)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as os-ken's hub.listen does
        try:
            probe.bind((host, port))
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc)
            _exit(1)
    os.environ[ENV_POLICY] = str(policy_path)
    os.environ[ENV_STATUS] = str(status_path)
    cfg.CONF(args=["--ofp-listen-host", host, "--ofp-tcp-listen-port", str(port)],
             project="os_ken", default_config_files=[])
    app_mgr = AppManager.get_instance()
    app_mgr.load_apps(app_modules)
    problem = check_app_classes({m: app_mgr.applications_cls.get(m) for m in app_modules})
    if problem:
        log.error("%s", problem)
        _exit(2)
    log.info("apps: %s", ", ".join(f"{m} ({app_mgr.applications_cls[m].__name__})" for m in app_modules))
    services = app_mgr.instantiate_apps(**app_mgr.create_contexts())
    hub.joinall(services)  # returns only if the OpenFlow server thread ended
    log.error("os-ken's OpenFlow server on %s:%d stopped (listen failed?); exiting", host, port)
    _exit(1)


def check_app_classes(classes: dict[str, type | None]) -> str | None:
    """What is wrong with the loaded app classes (module -> class, None if the module defines
    none), or None. Two listed apps where one's class subclasses the other's would both install
    the base app's flows: list only the subclass (it includes the base app)."""
    for module, cls in classes.items():
        if cls is None:
            return f"app module {module} defines no OSKenApp subclass (nothing to run)"
    for module, cls in classes.items():
        for other, base in classes.items():
            if other != module and cls is not None and base is not None and issubclass(cls, base):
                return (f"app {module} ({cls.__name__}) extends {other} ({base.__name__}) and already "
                        f"does its work: list only {module}")
    return None


def _exit(code: int) -> None:
    """Flush the logs and end the process at once (os-ken's hub threads cannot be joined)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controllers.launcher",
                                     description="Run the factorysat os-ken controller.")
    parser.add_argument("--policy", type=Path, required=True, help="slice policy JSON")
    parser.add_argument("--status", type=Path, required=True, help="status JSON the app writes")
    parser.add_argument("--port", type=int, required=True, help="OpenFlow TCP listen port")
    parser.add_argument("--host", default="127.0.0.1", help="loopback listen address (default 127.0.0.1)")
    parser.add_argument("--app", dest="apps", action="append", metavar="NAME",
                        help=f"app to load, repeatable (default {' '.join(DEFAULT_APPS)}): "
                             f"{allowed_apps()}; or a full dotted module path")
    args = parser.parse_args(argv)
    try:
        if not ipaddress.ip_address(args.host).is_loopback:
            parser.error(f"--host {args.host}: only a loopback address is allowed")
    except ValueError:
        parser.error(f"--host {args.host!r}: not an IP address")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: allowed 1..65535")
    apps = args.apps or list(DEFAULT_APPS)
    try:
        modules = resolve_apps(apps, path="--app")
    except ConfigError as exc:
        print(f"apps: {exc}", file=sys.stderr)
        return 2
    try:
        SlicePolicy.from_json(args.policy)
    except (OSError, ConfigError) as exc:
        print(f"policy {args.policy}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def on_term(signum: int, _frame: Any) -> None:
        logging.getLogger("controllers.launcher").info("signal %d: exiting", signum)
        _exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logging.getLogger("controllers.launcher").info(
        "pid %d starting, OpenFlow on %s:%d, apps %s, policy %s, status %s", os.getpid(), args.host,
        args.port, " ".join(apps), args.policy, args.status)
    try:
        run_controller(args.policy.resolve(), args.status.resolve(), args.port, args.host, modules)
    except Exception:
        logging.getLogger("controllers.launcher").exception("controller failed")
        _exit(1)
    return 0


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP ``port`` in this network namespace (from /proc/net/tcp*)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def tcp_listening(port: int, pid: int | None = None) -> bool:
    """True if a socket listens on TCP ``port`` (owned by process ``pid`` if given)."""
    inodes = listening_inodes(port)
    if pid is None or not inodes:
        return bool(inodes)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            return True
    return False


class ControllerProcess:
    """The controller as a child process, for the runner. Record ``.pid`` in the Manifest."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.port: int | None = None
        self.pid: int | None = None
        self.log_path: Path | None = None
        self.status_path: Path | None = None
        self.apps: list[str] = []  # module paths of the apps loaded
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, policy_path: Path, status_path: Path, log_path: Path,
              apps: Sequence[str] = DEFAULT_APPS, *, port: int | None = None,
              listen_timeout_s: float = 15.0, app_env: Mapping[str, str] | None = None) -> None:
        """Validate the apps and the policy, start the controller and return once it listens on
        ``self.port`` (a free loopback port unless ``port`` is given).

        ``apps``: registry names or dotted module paths (``controllers.apps.resolve_apps``);
        ``self.apps`` holds the module paths loaded. ``app_env``: extra environment variables for
        the apps (e.g. ``{controllers.apps.ENV_STATS_INTERVAL_S: "0.5"}`` for ``slice_monitor``).
        Raises ``ConfigError`` for an unknown app or a bad policy (before starting anything) and
        ``RuntimeError`` (with the log path and its last lines) if the process exits or does not
        listen within ``listen_timeout_s``.
        """
        if self._proc is not None:
            raise RuntimeError(f"controller already started (pid {self.pid})")
        if isinstance(apps, Iterable) and not isinstance(apps, str | bytes):
            apps = list(apps)  # an iterator is read twice below
        self.apps = resolve_apps(apps)  # ConfigError for an unknown app, a str, ...
        SlicePolicy.from_json(policy_path)
        self.port = port if port is not None else free_loopback_port()
        self.log_path, self.status_path = Path(log_path), Path(status_path)
        self.status_path.unlink(missing_ok=True)  # never mistake an old run's status for ours
        env = dict(os.environ)
        env.update(app_env or {})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        env["OSKEN_HUB_TYPE"] = "native"  # threads; the eventlet hub would need monkey-patching
        cmd = [self.python, "-m", "controllers.launcher", "--policy", str(Path(policy_path).resolve()),
               "--status", str(self.status_path.resolve()), "--port", str(self.port)]
        for app in apps:
            cmd += ["--app", app]
        with open(self.log_path, "ab") as log:
            # New session: a Ctrl-C in the runner's terminal does not reach the controller, so the
            # runner's cleanup decides when it stops.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, start_new_session=True)
        self.pid = self._proc.pid
        try:
            self._wait_listening(listen_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout_s: float) -> None:
        assert self._proc is not None and self.port is not None
        deadline = time.monotonic() + timeout_s
        while not tcp_listening(self.port, self.pid):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"controller pid {self.pid} not listening on 127.0.0.1:{self.port} "
                                   f"after {timeout_s} s (port in use?); see log {self.log_path}"
                                   f"{self._log_tail()}")
            time.sleep(_POLL_S)

    def _check_alive(self) -> None:
        if self._proc is None:
            raise RuntimeError("controller not started")
        failure = self.failed()
        if failure is not None:
            raise failure

    def failed(self) -> ControllerDied | None:
        """A ControllerDied naming the exit and the log if the process has exited, else None."""
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return None
        how = f"exited (killed by signal {-code})" if code < 0 else f"exited with code {code}"
        return ControllerDied(f"controller pid {self.pid} {how}; see log {self.log_path}{self._log_tail()}",
                              component="controller", log_path=str(self.log_path))

    def _log_tail(self, lines: int = 3) -> str:
        """The log's last ``lines`` lines, indented, for an error message ('' if unreadable)."""
        try:
            with open(self.log_path or "", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                tail = f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "".join(f"\n  | {line}" for line in tail)

    def read_status(self) -> dict[str, Any] | None:
        """The status file's content if this process wrote it, else None."""
        if self.status_path is None:
            return None
        try:
            status = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None
        return status if status.get("pid") == self.pid else None

    def wait_ready(self, dpids: Iterable[int] | Mapping[int, str], timeout_s: float) -> None:
        """Block until every dpid has its flows installed (barrier confirmed).

        ``dpids``: datapath ids, or a mapping dpid -> bridge name (named in errors). Raises
        ``ControllerNotReady`` (a RunFailed and TimeoutError) naming the datapaths that did not
        connect and the log path, ``ControllerDied`` (a RunFailed and RuntimeError) if the
        controller exits or reports an error for one of the dpids.
        """
        names = dict(dpids) if isinstance(dpids, Mapping) else {}
        wanted = set(dpids)
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            status = self.read_status() or {}
            errors = {int(k): v for k, v in status.get("errors", {}).items() if int(k) in wanted}
            if errors:
                raise ControllerDied(f"controller reports errors for dpids {_fmt(errors, names)}: {errors}; "
                                     f"see log {self.log_path}", component="controller",
                                     log_path=str(self.log_path))
            missing = wanted - set(status.get("ready_dpids", []))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise ControllerNotReady(
                    f"{len(missing)} of {len(wanted)} datapaths did not connect to the controller (pid "
                    f"{self.pid}, port {self.port}) and get their flows within {timeout_s:g} s: "
                    f"{_fmt(missing, names)}; see log {self.log_path}", component="controller",
                    log_path=str(self.log_path))
            time.sleep(_POLL_S)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 3.0) -> None:
        """SIGTERM the controller, SIGKILL it after ``timeout_s``; safe to call repeatedly."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> ControllerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fmt(dpids: Iterable[int], names: Mapping[int, str] | None = None) -> str:
    names = names or {}
    return "[" + ", ".join((f"{names[d]} " if d in names else "") + f"{d} ({d:#x})"
                           for d in sorted(dpids)) + "]"


if __name__ == "__main__":
    sys.exit(main())
