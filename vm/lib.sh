# Shared helpers for vm/*.sh (sourced, not run). Paths, progress lines, host tools, cache
# location, and the guards that keep chroot mounts and rm -rf apart.
# shellcheck shell=bash disable=SC2034  # (the variables are used by the scripts that source this)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$REPO/build/vm                          # git-ignored (/build/)
CACHE_ROOT=${FACTORYSAT_VM_CACHE:-/var/cache/factorysat/vm}   # outside the clone: CI clones fresh
SUITE=bookworm
MIRROR=${FACTORYSAT_VM_MIRROR:-http://deb.debian.org/debian}
ROOT_UUID=7d1c5a52-3f0e-4b8e-9a57-5fa6e0c0f13d    # fixed, so grub.cfg/fstab and vm-test agree
VM_USER=factorysat                                # login factorysat / password factorysat
PROJECT_IN_GUEST=/home/$VM_USER/factorysat
IMAGE_RAW=$BUILD_DIR/factorysat-vm.raw
IMAGE_QCOW2=$BUILD_DIR/factorysat-vm.qcow2

# Progress: one line per stage with seconds since the outermost script started.
export VM_T0=${VM_T0:-$(date +%s)}
VM_TAG=${VM_TAG:-vm}
stage() { printf '[%s %4ds] %s\n' "$VM_TAG" "$(( $(date +%s) - VM_T0 ))" "$*"; }
die() { printf '%s: ERROR: %s\n' "$VM_TAG" "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mkfs); run it through make, which uses sudo"
}

# Host tools, installed from Debian when missing (a brand-new machine has none of them).
ensure_host_tools() {
  local want=(debootstrap qemu-system-x86 qemu-utils e2fsprogs fdisk tar git python3) missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  stage "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Refuse to delete a tree that still has anything mounted below it (a chroot's /dev bind mount
# would otherwise take the host's /dev with it).
safe_rmtree() {
  local dir=$1
  [ -e "$dir" ] || return 0
  dir=$(readlink -f "$dir")
  case $dir in /|/home|/root|/usr|/var|/work|"$REPO") die "refusing to delete $dir" ;; esac
  if awk -v d="$dir/" '{ if (index($2 "/", d) == 1) found = 1 } END { exit !found }' /proc/mounts; then
    die "refusing to delete $dir: something is still mounted below it (see /proc/mounts)"
  fi
  rm -rf --one-file-system "$dir"
}

# Chroot with proc, sys and the host's /dev; every mount is recorded and undone by chroot_umount
# (call it from an EXIT trap too). The environment is cleared: the host's pip settings (local
# wheel folders, certificate paths) do not exist inside the chroot.
CHROOT_MOUNTS=()
chroot_mount() {
  local root=$1
  mount -t proc proc "$root/proc" && CHROOT_MOUNTS+=("$root/proc")
  mount -t sysfs sys "$root/sys" && CHROOT_MOUNTS+=("$root/sys")
  mount --bind /dev "$root/dev" && CHROOT_MOUNTS+=("$root/dev")
}
chroot_umount() {
  local i
  for (( i=${#CHROOT_MOUNTS[@]}-1; i>=0; i-- )); do
    umount "${CHROOT_MOUNTS[i]}" || umount -l "${CHROOT_MOUNTS[i]}" || true
  done
  CHROOT_MOUNTS=()
}
in_chroot() {
  local root=$1; shift
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive ${http_proxy:+http_proxy=$http_proxy} \
    ${https_proxy:+https_proxy=$https_proxy} ${no_proxy:+no_proxy=$no_proxy} \
    chroot "$root" "$@"
}

# The Debian packages the project's bootstrap.sh installs, read from its apt_pkgs=( … ) list,
# so that the image (whose guest has no network) already holds all of them.
bootstrap_apt_pkgs() {
  local pkgs
  pkgs=$(sed -n '/^apt_pkgs=(/,/)/p' "$REPO/bootstrap.sh" | sed 's/apt_pkgs=(//; s/)//' | tr -s ' \n' '\n' \
         | grep -v '^$' || true)
  [ -n "$pkgs" ] || die "could not read apt_pkgs=( … ) from bootstrap.sh (vm/lib.sh parses it)"
  printf '%s\n' "$pkgs"
}
