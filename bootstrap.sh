#!/usr/bin/env bash
# Idempotent set-up for factorysat: Debian packages, the project venv (.venv, CPython 3.11) with
# pinned dependencies, Debian's Mininet made visible inside the venv, and the Open vSwitch daemons.
# Safe to run again: every step checks first. Needs root; re-executes itself through sudo if not.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "bootstrap: needs root and sudo is not installed" >&2; exit 1; }
  exec sudo -E "$0" "$@"
fi

say() { printf 'bootstrap: %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

# --- Debian packages ------------------------------------------------------------------------
apt_pkgs=(mininet openvswitch-switch iperf3 iputils-ping ethtool iproute2 nftables kmod tcpdump
          python3 python3-venv python3-dev gcc make)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python venv ------------------------------------------------------------------------------
# The system CPython (Debian 12: 3.11), so that Debian's Mininet package matches it.
py=""
for candidate in /usr/bin/python3.11 /usr/bin/python3 "$(command -v python3 || true)"; do
  if [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    py=$candidate; break
  fi
done
[ -n "$py" ] || { echo "bootstrap: needs Python >= 3.11 (Debian 12 has it as python3)" >&2; exit 1; }
stamp=.venv/.factorysat-installed
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  say "creating .venv with $py"
  rm -rf .venv
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing Python dependencies (pinned in pyproject.toml; log: .venv/pip-install.txt)"
  if ! { .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e '.[test]'; } \
      > .venv/pip-install.txt 2>&1; then
    tail -n 30 .venv/pip-install.txt >&2
    echo "bootstrap: pip install failed; full log in .venv/pip-install.txt" >&2
    exit 1
  fi
  touch "$stamp"
fi
# Debian's Mininet (2.3.0) is the maintained one; PyPI's is a 2020 snapshot. Expose only that
# package to the venv through a .pth pointing at a folder holding one symlink.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p .venv/debian-mininet
mininet_pkg=/usr/lib/python3/dist-packages/mininet
[ -d "$mininet_pkg" ] || { echo "bootstrap: Debian's mininet package is not at $mininet_pkg" >&2; exit 1; }
ln -sfn "$mininet_pkg" .venv/debian-mininet/mininet
echo "$PWD/.venv/debian-mininet" > "$site/debian-mininet.pth"
.venv/bin/python -c 'import mininet.net' || { echo "bootstrap: mininet does not import in .venv" >&2; exit 1; }

# --- Ryu 4.34 (the controller apps also load under Ryu: controllers/sdn.py) -----------------------
# Its own venv (.venv-ryu): Ryu 4.34 and os-ken cannot share one. Pins and why: the requirements file.
# --no-build-isolation: an isolated build would pull setuptools >= 68, which Ryu's setup.py breaks on.
ryu_stamp=.venv-ryu/.factorysat-installed
if [ ! -f "$ryu_stamp" ] || [ controllers/ryu-requirements.txt -nt "$ryu_stamp" ]; then
  say "installing Ryu 4.34 into .venv-ryu (log: .venv-ryu/pip-install.txt)"
  rm -rf .venv-ryu
  "$py" -m venv .venv-ryu
  # from PyPI even where the main venv comes from a wheelhouse (vm/build.sh sets PIP_NO_INDEX for it)
  if ! { env -u PIP_NO_INDEX -u PIP_FIND_LINKS .venv-ryu/bin/pip install -r controllers/ryu-requirements.txt \
         && env -u PIP_NO_INDEX -u PIP_FIND_LINKS .venv-ryu/bin/pip install --no-build-isolation ryu==4.34; } \
       > .venv-ryu/pip-install.txt 2>&1; then
    tail -n 30 .venv-ryu/pip-install.txt >&2
    echo "bootstrap: Ryu install failed; full log in .venv-ryu/pip-install.txt" >&2
    exit 1
  fi
  touch "$ryu_stamp"
fi

# --- Open vSwitch daemons ---------------------------------------------------------------------
# With systemd (a normal VM) the service runs already. Without (containers, CI) start both
# daemons by hand with pidfiles under /var/run/openvswitch; they are system services, not run
# state of ours, and are left running like the service would be.
rundir=/var/run/openvswitch
alive() { [ -f "$rundir/$1.pid" ] && kill -0 "$(cat "$rundir/$1.pid")" 2>/dev/null; }
start_by_hand() {
  mkdir -p "$rundir" /etc/openvswitch /var/log/openvswitch
  db=/etc/openvswitch/conf.db
  [ -f "$db" ] || ovsdb-tool create "$db" /usr/share/openvswitch/vswitch.ovsschema
  if ! alive ovsdb-server; then
    say "starting ovsdb-server"
    ovsdb-server "$db" --remote=punix:$rundir/db.sock \
      --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
      --pidfile=$rundir/ovsdb-server.pid --detach --log-file=/var/log/openvswitch/ovsdb-server.log
    ovs-vsctl --no-wait init
  fi
  if ! alive ovs-vswitchd; then
    say "starting ovs-vswitchd"
    ovs-vswitchd unix:$rundir/db.sock --pidfile=$rundir/ovs-vswitchd.pid --detach \
      --log-file=/var/log/openvswitch/ovs-vswitchd.log
  fi
}
if ! alive ovsdb-server || ! alive ovs-vswitchd; then
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    say "starting openvswitch-switch service"
    # The service may refuse to start without the kernel module (containers): then by hand.
    systemctl start openvswitch-switch || start_by_hand
  else
    start_by_hand
  fi
fi
ovs-vsctl --timeout=10 show >/dev/null

# --- Ownership ----------------------------------------------------------------------------------
# Run through sudo by a normal user: what we made in their checkout is theirs (README "Running as
# a normal user"). -h: symlinks themselves, never their targets.
if [ -n "${SUDO_UID:-}" ] && [ "${SUDO_UID}" != 0 ] && getent passwd "$SUDO_UID" >/dev/null; then
  for made in .venv .venv-ryu factorysat.egg-info topologies/links/relay/bin; do
    [ -e "$made" ] && chown -R -h "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$made"
  done
fi
say "ready"
