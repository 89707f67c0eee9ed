#!/bin/bash
# PID 1 of the `make vm-test` guest (kernel argument init=<project>/vm/guest/test-init.sh; the user
# image boots systemd instead). Sets up the minimum a system needs, starts Open vSwitch the way
# bootstrap.sh does without systemd, runs the checks with the backends auto-selected, writes every
# result as a tar stream onto the second disk (/dev/vdb, serial fsvm-results) and powers off.
# No `set -e`: a failing check is recorded and the next one still runs; PID 1 must reach poweroff.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  TERM=dumb CI=true
# Software emulation distorts time: the netem tests widen their timing tolerances by this factor
# (tests/integration/linkbed.py); their functional assertions are unchanged.
export FACTORYSAT_TEST_TIMING_SLACK=5
PROJECT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
R=/root/vm-test                  # everything under here goes back to the host
T0=$(date +%s)
say() { echo "factorysat-vm-test: [$(( $(date +%s) - T0 ))s] $*"; }
poweroff_now() { sync; echo o > /proc/sysrq-trigger; sleep 30; }

mnt() { mountpoint -q "$2" || { mkdir -p "$2"; mount -t "$1" "$1" "$2" "${@:3}"; }; }
mnt proc /proc
mnt sysfs /sys
mnt devtmpfs /dev
mnt tmpfs /run -o mode=0755
mnt devpts /dev/pts -o gid=5,mode=620,ptmxmode=666   # Mininet's hosts run in ptys
mnt tmpfs /dev/shm
mnt tmpfs /tmp -o mode=1777
hostname factorysat-vm
ip link set lo up
mkdir -p "$R/results" "$R/diag"
printf 'stage\trc\tseconds\n' > "$R/stages.tsv"
say "guest up: kernel $(uname -r), project $PROJECT"

# run_stage NAME TIMEOUT_S CMD...: output to $R/NAME.txt, exit code and duration to stages.tsv.
run_stage() {
  local name=$1 limit=$2 t rc; shift 2
  say "$name: $*"
  t=$(date +%s)
  (cd "$PROJECT" && timeout --kill-after=10 "$limit" "$@") > "$R/$name.txt" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t ))" >> "$R/stages.tsv"
  say "$name: exit $rc after $(( $(date +%s) - t ))s"
  [ "$rc" = 0 ] || tail -n 25 "$R/$name.txt" | sed "s/^/factorysat-vm-test:   $name| /"
}

# As the openvswitch-switch service does on the user image: the module before the daemons (a
# vswitchd started without it never offers the kernel datapath). The backends stay auto-selected.
modprobe openvswitch || say "modprobe openvswitch failed"
PY=.venv/bin/python
run_stage bootstrap 300 ./bootstrap.sh
# The netem link-engine tests wherever they live under tests/: root tests whose name says netem, in
# the test files that mention netem (collecting every test module costs ~40 s more under TCG).
mapfile -t netem_files < <(cd "$PROJECT" && grep -rlis --include='test_*.py' netem tests | sort)
run_stage pytest_netem 1200 "$PY" -m pytest -q -ra --durations=0 -p no:cacheprovider -m root -k netem \
  --junitxml="$R/pytest_netem.xml" "${netem_files[@]:-tests}"
run_stage demo 900 "$PY" -m experiments run demo --duration-s 5 --results "$R/results"
tail -n 12 "$R/demo.txt" | sed 's/^/factorysat-vm-test:   demo| /'
run_stage bench 1200 "$PY" -m experiments bench links --quick --backend all --results "$R/results"

say "collecting diagnostics"
{ uname -a; echo; lsmod | grep -E '^(sch_netem|openvswitch) ' || true; echo; ovs-vsctl show; echo
  ovs-dpctl show; } > "$R/diag/system.txt" 2>&1
dmesg > "$R/diag/dmesg.txt" 2>&1
cp /var/log/openvswitch/*.log "$R/diag/" 2>/dev/null
date -u +%Y-%m-%dT%H:%M:%SZ > "$R/DONE"

# The results disk is found by its serial, not by its name (vda/vdb depends on PCI slot order).
disk=""
for d in /sys/block/vd*; do
  [ "$(cat "$d/serial" 2>/dev/null)" = fsvm-results ] && disk=/dev/${d##*/}
done
if [ -z "$disk" ]; then
  say "no results disk (virtio serial fsvm-results): results stay in the guest"
elif tar -C "$R" -cf "$disk" . && sync && blockdev --flushbufs "$disk"; then
  say "results written to $disk ($(du -sh "$R" | cut -f1))"
else
  say "writing results to $disk FAILED"
fi
say "done; powering off"
poweroff_now
