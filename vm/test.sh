#!/usr/bin/env bash
# `make vm-test`: the netem link backend and the kernel OVS datapath, tested end to end inside a
# qemu guest with a stock Debian kernel (this machine's kernel has neither).
#
# Builds the disk (vm/build.sh; cached base), boots it with software emulation (TCG: KVM guests hang
# on this host kind) and init=vm/guest/test-init.sh, which runs the netem tests, a 5 s demo and the
# link benchmark with both backends, then writes its results as a tar stream onto a second raw disk.
# The host unpacks that file (no loop device, no mount) and checks it with vm/check_results.py.
# qemu is always stopped, by its recorded pid, on any exit and after a hard timeout.
set -euo pipefail
export VM_TAG=${VM_TAG:-vm-test}
# shellcheck source=vm/lib.sh
source "$(dirname "$0")/lib.sh"
need_root
timeout_s=${FACTORYSAT_VM_TEST_TIMEOUT_S:-1500}   # the guest's whole run; normally ~6 min
out=$BUILD_DIR/test
console=$out/console.log

# qemu runs under timeout(1) as well, so it is stopped even if this script is killed outright.
wrapper=""
stop_qemu() {
  local pid
  [ -n "$wrapper" ] || return 0
  pid=$(cat "$out/qemu.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  kill -TERM "$wrapper" 2>/dev/null || true
  wait "$wrapper" 2>/dev/null || true
  wrapper=""
}
trap stop_qemu EXIT
trap 'exit 130' INT TERM

"$REPO/vm/build.sh"

safe_rmtree "$out"
mkdir -p "$out/guest"
truncate -s 2G "$out/results.disk"     # sparse; the guest writes one tar stream onto it
stage "booting the guest (qemu TCG, 2 vCPUs, 2 GB; console: $console; hard timeout ${timeout_s}s)"
timeout -k 10 $((timeout_s + 60)) qemu-system-x86_64 -pidfile "$out/qemu.pid" -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
  -display none -monitor none -no-reboot -nic none -serial "file:$console" \
  -kernel "$BUILD_DIR/vmlinuz" -initrd "$BUILD_DIR/initrd.img" \
  -append "console=ttyS0 quiet root=UUID=$ROOT_UUID rw panic=1 init=$PROJECT_IN_GUEST/vm/guest/test-init.sh" \
  -drive "file=$IMAGE_RAW,format=raw,if=virtio,snapshot=on" \
  -drive "file=$out/results.disk,format=raw,if=none,id=results" \
  -device virtio-blk-pci,drive=results,serial=fsvm-results &
wrapper=$!

# Relay the guest's progress lines while waiting; stop qemu at the deadline.
start=$(date +%s)
shown=0
timed_out=false
while kill -0 "$wrapper" 2>/dev/null; do
  sleep 2
  lines=$(grep -a '^factorysat-vm-test:' "$console" 2>/dev/null | tr -d '\r' || true)
  n=$(printf '%s' "$lines" | grep -c . || true)
  if [ "$n" -gt "$shown" ]; then
    printf '%s\n' "$lines" | tail -n +"$((shown + 1))" | sed "s/^factorysat-vm-test: /[$VM_TAG $(( $(date +%s) - VM_T0 ))s]   guest /"
    shown=$n
  fi
  if [ $(( $(date +%s) - start )) -ge "$timeout_s" ]; then
    timed_out=true
    stage "guest still running after ${timeout_s}s: stopping qemu (pid $(cat "$out/qemu.pid" 2>/dev/null))"
    break
  fi
done
stop_qemu
stage "guest stopped after $(( $(date +%s) - start ))s"

if ! $timed_out; then
  tar -xf "$out/results.disk" -C "$out/guest" 2>"$out/untar.txt" || true
fi
echo
echo "Timings inside a TCG (software-emulated) guest are distorted: the numbers below and in"
echo "$out/guest are a functional check of the netem / kernel-OVS path, not fidelity figures."
echo
status=0
python3 "$REPO/vm/check_results.py" "$out/guest" || status=1
if $timed_out; then
  echo "FAIL  the guest did not finish within ${timeout_s}s (FACTORYSAT_VM_TEST_TIMEOUT_S)"
  status=1
fi
if [ "$status" != 0 ]; then
  echo
  echo "vm-test FAILED. Guest console log: $console"
  echo "Guest outputs (per-stage logs, diagnostics): $out/guest/"
  exit 1
fi
stage "vm-test PASSED (console log: $console)"
