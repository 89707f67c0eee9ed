#!/usr/bin/env python3
"""`make vm-boot-test`: boot the user image as a user would and use it (not run in CI: ~10 min).

BIOS -> GRUB -> kernel -> systemd on build/vm/factorysat-vm.qcow2 (a throw-away snapshot: the image
is not changed), with no network at all. On the serial console: wait for the login prompt and its
hint text, log in as factorysat/factorysat, check the motd, run `make demo` and check that it used
the netem backend and the kernel datapath and wrote a complete run folder, then power off.
qemu is stopped by its pid on every exit. Console log: build/vm/boot-test/console.log.
Standard library only; run as root (make runs it through sudo).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "build/vm/factorysat-vm.qcow2"
OUT = REPO / "build/vm/boot-test"
USER = PASSWORD = "factorysat"
T0 = time.monotonic()


def stage(msg: str) -> None:
    print(f"[vm-boot-test {time.monotonic() - T0:4.0f}s] {msg}", flush=True)


class Console:
    """The guest's serial port over a unix socket; everything read is kept for expect()."""

    def __init__(self, path: Path) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = self.seen = ""

    def expect(self, pattern: str, timeout_s: float) -> re.Match:
        """Wait for ``pattern`` (multi-line mode) in what arrived since the last match; consume up
        to its end. Markers are matched at a line start, so the echo of a typed command is not one."""
        deadline = time.monotonic() + timeout_s
        while True:
            m = re.search(pattern, self.buf, re.M)
            if m:
                self.seen, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {pattern!r} on the console within {timeout_s:.0f}s")
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise EOFError(f"console closed while waiting for {pattern!r}")
            self.buf += data.decode(errors="replace").replace("\r", "")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r")


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("vm-boot-test: needs root (qemu's console socket and image under build/)")
    if not IMAGE.is_file():
        sys.exit(f"vm-boot-test: {IMAGE} missing: run `make vm-image` first")
    OUT.mkdir(parents=True, exist_ok=True)
    sock, log, pidfile = OUT / "console.sock", OUT / "console.log", OUT / "qemu.pid"
    for p in (sock, log, pidfile):
        p.unlink(missing_ok=True)
    accel = os.environ.get("FACTORYSAT_VM_ACCEL", "tcg,thread=multi")  # KVM guests hang on this host kind
    argv = ["timeout", "-k", "10", "1800", "qemu-system-x86_64", "-accel", accel, "-cpu", "max",
            "-smp", "2", "-m", "2048", "-display", "none", "-monitor", "none", "-no-reboot",
            "-nic", "none", "-pidfile", str(pidfile),
            "-drive", f"file={IMAGE},format=qcow2,if=virtio,snapshot=on",
            "-chardev", f"socket,id=ser0,path={sock},server=on,wait=off,logfile={log}",
            "-serial", "chardev:ser0"]
    stage(f"booting {IMAGE.name} through BIOS and GRUB (TCG; console log {log})")
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    results: list[tuple[bool, str]] = []

    def check(ok: bool, what: str) -> None:
        results.append((ok, what))
        stage(f"{'PASS' if ok else 'FAIL'}  {what}")

    try:
        con = Console(sock)
        con.expect(r"Log in as\s+factorysat\s+password\s+factorysat", 600)
        con.expect(r"login: ", 60)
        check(True, "login prompt with the login hint (/etc/issue) on the serial console")
        con.send(USER)
        con.expect(r"Password: ", 60)
        con.send(PASSWORD)
        con.expect(r"\$ ", 120)
        check("cd ~/factorysat" in con.seen and "make demo" in con.seen,
              "motd after login names the project and make demo")
        con.send("cd ~/factorysat && ip -brief link && make demo; echo DEMO-EXIT=$?")
        stage("make demo (30 s of traffic; set-up under TCG takes minutes)")
        m = con.expect(r"DEMO-EXIT=(\d+)", 1200)
        out = con.seen
        check(not re.search(r"^(en|eth)\S*\s", out, re.M), "no network interface besides lo (offline)")
        check(m.group(1) == "0", "make demo exited 0")
        check("link backend netem, OVS datapath kernel" in out,
              "demo used link backend netem and OVS datapath kernel")
        run = re.findall(r"^(/home/factorysat/factorysat/results/demo/\S+)$", out, re.M)
        if run:
            con.send(f"ls {run[-1]}/COMPLETE {run[-1]}/summary.json && echo RUN-OK")
            con.expect(r"^(RUN-OK|ls: .*No such file)", 120)
        check(bool(run) and con.seen.endswith("RUN-OK"), "run folder has COMPLETE and summary.json")
        con.send("sudo poweroff")
        con.expect(r"reboot: Power down", 600)
        qemu.wait(timeout=60)
        check(True, "sudo poweroff: the guest shut down")
    except (TimeoutError, EOFError, OSError, subprocess.TimeoutExpired) as exc:
        check(False, f"{exc}")
    finally:
        try:
            pid = int(pidfile.read_text())
            if Path(f"/proc/{pid}/comm").read_text().strip() == "qemu-system-x86":
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        try:
            qemu.wait(timeout=15)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
    failed = [w for ok, w in results if not ok]
    verdict = "PASSED" if not failed else "FAILED"
    passed = len(results) - len(failed)
    print(f"\nvm-boot-test: {verdict} ({passed}/{len(results)} checks); console log: {log}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
