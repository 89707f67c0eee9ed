#!/usr/bin/env bash
# The bootable VM disk with this checkout installed (`make vm-image`; `make vm-test` builds it too).
#
#   vm/build.sh           build/vm/factorysat-vm.raw (+ vmlinuz, initrd.img for a direct kernel boot)
#   vm/build.sh --qcow2   ... and build/vm/factorysat-vm.qcow2, compressed: the image users boot
#
# The base system (vm/base.sh) and the project's venv are cached under $CACHE_ROOT, keyed by the
# package list / pyproject.toml; the project itself is copied in fresh every time. No loop device
# and no mount of the image: the disk is written with sfdisk, mkfs.ext4 -d and dd.
set -euo pipefail
# shellcheck source=vm/lib.sh
source "$(dirname "$0")/lib.sh"
need_root
qcow2=false
case ${1:-} in --qcow2) qcow2=true ;; "") ;; *) die "usage: vm/build.sh [--qcow2]" ;; esac

staging=$BUILD_DIR/rootfs
resolv_saved=""
cleanup() {
  chroot_umount
  if [ -n "$resolv_saved" ]; then rm -f "$staging/etc/resolv.conf"; mv "$resolv_saved" "$staging/etc/resolv.conf"; fi
}
trap cleanup EXIT

ensure_host_tools
mkdir -p "$BUILD_DIR" "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"        # one build at a time on a machine: the cache is shared
flock -n 9 || { stage "waiting for another VM build on this machine ($CACHE_ROOT/.lock)"; flock 9; }

# --- the base system, cached per package list and recipe --------------------------------------
key=$("$REPO/vm/base.sh" --key)
base=$CACHE_ROOT/base-$key
if [ -f "$base/COMPLETE" ]; then
  stage "base system: cached ($base)"
else
  safe_rmtree "$base.partial"
  "$REPO/vm/base.sh" "$base.partial"
  touch "$base.partial/COMPLETE"
  mv "$base.partial" "$base"
fi
touch "$base"
# Bases of other package lists not used for 14 days (other branches) are removed.
find "$CACHE_ROOT" -maxdepth 1 -name 'base-*' ! -name "base-$key" -mtime +14 -print0 \
  | while IFS= read -r -d '' old; do stage "removing unused cache $old"; safe_rmtree "$old"; done

stage "copying the base root filesystem"
safe_rmtree "$staging"
cp -a "$base/rootfs" "$staging"

# --- the project: a git checkout of this one, plus its uncommitted and untracked files ---------
stage "copying the project into $PROJECT_IN_GUEST"
proj=$staging$PROJECT_IN_GUEST
git() { command git -c safe.directory='*' "$@"; }   # make runs us through sudo in a user's clone
git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 || die "$REPO is not a git checkout"
git clone -q --no-hardlinks "$REPO" "$proj"
git -C "$proj" remote remove origin
changed=$BUILD_DIR/changed-files.txt
: > "$changed"
while IFS= read -r -d '' f; do
  if [ -e "$REPO/$f" ] || [ -L "$REPO/$f" ]; then printf '%s\0' "$f" >> "$changed"; else rm -f "$proj/$f"; fi
done < <(git -C "$REPO" ls-files -z --modified --others --exclude-standard)
tar -C "$REPO" --null -T "$changed" -cf - | tar -C "$proj" -xf -
dirty=$(git -C "$proj" status --porcelain --untracked-files=no | wc -l)

# --- the venv: bootstrap.sh in a chroot, with pip from a cache keyed by pyproject.toml ----------
# bootstrap.sh would start the OVS daemons and could call apt-get: inside a build chroot nothing may
# start (stubs that do nothing) and every package must already be in the base (a stub that fails).
venv_key=$(cat "$REPO/pyproject.toml" "$REPO/bootstrap.sh" | sha256sum | cut -c1-16)
venv_cache=$base/venv-$venv_key
if [ -d "$venv_cache/.venv" ]; then
  stage "venv: cached ($venv_cache)"
  cp -a "$venv_cache/.venv" "$proj/.venv"
  touch "$proj/.venv/.factorysat-installed"   # newer than the fresh pyproject.toml: no pip run
else
  stage "venv: pip install from PyPI inside the image (~2 min; log in the image: .venv/pip-install.txt)"
fi
shims=$staging/tmp/fsvm-shims
mkdir -p "$shims"
for t in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl systemctl; do
  printf '#!/bin/sh\nexit 0\n' > "$shims/$t"
done
printf '#!/bin/sh\necho "vm/build.sh: bootstrap.sh wants apt-get $*, but the image has no such package; vm/lib.sh reads its apt_pkgs list" >&2\nexit 1\n' \
  > "$shims/apt-get"
chmod +x "$shims"/*
# Downloads use the host's DNS and trust store (a site may inspect TLS with its own CA); the
# image keeps Debian's own resolv.conf and certificates.
resolv_saved=$staging/etc/resolv.conf.fsvm-saved
mv "$staging/etc/resolv.conf" "$resolv_saved"
cp -L /etc/resolv.conf "$staging/etc/resolv.conf"
ca=""
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  ca=/tmp/fsvm-shims/host-ca.crt
  cp /etc/ssl/certs/ca-certificates.crt "$staging$ca"
fi
chroot_mount "$staging"
if ! in_chroot "$staging" /usr/bin/env PATH=/tmp/fsvm-shims:/usr/sbin:/usr/bin:/sbin:/bin \
     ${ca:+PIP_CERT=$ca SSL_CERT_FILE=$ca} /bin/bash -c "cd '$PROJECT_IN_GUEST' && ./bootstrap.sh" 2>&1 \
     | sed 's/^/  | /'; then
  die "bootstrap.sh failed inside the image (output above; pip log: $proj/.venv/pip-install.txt)"
fi
# Byte-compile the project too (pip did the venv): a TCG guest starts many Python processes.
in_chroot "$staging" "$PROJECT_IN_GUEST/.venv/bin/python" -m compileall -q -j 0 -x '/\.(venv|git)/' \
  "$PROJECT_IN_GUEST" >/dev/null
cleanup
resolv_saved=""
rm -rf "${staging:?}"/tmp/fsvm-shims "${staging:?}"/run/* "${staging:?}"/root/.cache
if [ ! -d "$venv_cache/.venv" ]; then
  safe_rmtree "$venv_cache.partial"
  mkdir -p "$venv_cache.partial"
  cp -a "$proj/.venv" "$venv_cache.partial/"
  mv "$venv_cache.partial" "$venv_cache"
fi
uid_gid=$(awk -F: -v u="$VM_USER" '$1 == u { print $3 ":" $4 }' "$staging/etc/passwd")
chown -R "$uid_gid" "$proj"

cat > "$staging/etc/factorysat-image" <<EOF
built_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
source_commit=$(git -C "$REPO" rev-parse HEAD)
source_uncommitted_files=$dirty
base_cache_key=$key
venv_cache_key=$venv_key
kernel=$(basename "$(readlink "$staging/vmlinuz")")
login=$VM_USER/$VM_USER
project=$PROJECT_IN_GUEST
EOF
cp -L "$staging/vmlinuz" "$BUILD_DIR/vmlinuz"
cp -L "$staging/initrd.img" "$BUILD_DIR/initrd.img"

# --- the disk: MBR, one ext4 partition from 1 MiB, GRUB in the MBR and the gap after it ---------
disk_gb=${FACTORYSAT_VM_DISK_GB:-8}
stage "writing the ${disk_gb} GB disk (sparse): partition table, ext4 filled from the root tree, GRUB"
tmp=$IMAGE_RAW.partial
rm -f "$tmp"
truncate -s "${disk_gb}G" "$tmp"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$tmp"
mkfs.ext4 -q -F -L factorysat -U "$ROOT_UUID" -E offset=$((2048 * 512)) -d "$staging" "$tmp" \
  "$((disk_gb * 1024 - 1))M"
core=$base/core.img
[ "$(stat -c %s "$core")" -lt $((2047 * 512)) ] || die "GRUB core.img does not fit before the partition"
dd if="$base/boot.img" of="$tmp" bs=440 count=1 conv=notrunc status=none   # keeps the partition table
printf '\x90\x90' | dd of="$tmp" bs=1 seek=$((0x66)) conv=notrunc status=none  # as grub-bios-setup: trust BIOS drive
dd if="$core" of="$tmp" bs=512 seek=1 conv=notrunc status=none                 # boot.img loads sector 1
mv "$tmp" "$IMAGE_RAW"
stage "disk written; removing the staging tree"
safe_rmtree "$staging"

if $qcow2; then
  stage "compressing to qcow2 (~2 min)"
  qemu-img convert -c -O qcow2 "$IMAGE_RAW" "$IMAGE_QCOW2.partial"
  mv "$IMAGE_QCOW2.partial" "$IMAGE_QCOW2"
  (cd "$BUILD_DIR" && sha256sum "$(basename "$IMAGE_QCOW2")" > "$(basename "$IMAGE_QCOW2").sha256")
  stage "image: $IMAGE_QCOW2 ($(du -h "$IMAGE_QCOW2" | cut -f1); login $VM_USER/$VM_USER; README: \"The VM image\")"
else
  stage "disk: $IMAGE_RAW ($(du -h "$IMAGE_RAW" | cut -f1) used of ${disk_gb} GB)"
fi
