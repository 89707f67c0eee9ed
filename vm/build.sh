#!/usr/bin/env bash
# The bootable VM disk with this checkout installed (`make vm-image`; `make vm-test` builds it too).
#
#   vm/build.sh           build/vm/factorysat-vm.raw (+ vmlinuz, initrd.img for a direct kernel boot)
#   vm/build.sh --qcow2   ... and build/vm/factorysat-vm.qcow2, compressed: the image users boot
#
# The base system (vm/base.sh) and the project's venv are cached under $CACHE_ROOT, keyed by the
# package list / pyproject.toml; the project itself is copied in fresh every time. The image's tree
# is an overlay mount: the cached base and venv are read-only layers (a build cannot change the
# cache) and only what this build adds is written. No loop device and no mount of the image: the
# disk is written with sfdisk, mkfs.ext4 -d and dd.
set -euo pipefail
# shellcheck source=vm/lib.sh
source "$(dirname "$0")/lib.sh"
need_root
qcow2=false
case ${1:-} in --qcow2) qcow2=true ;; "") ;; *) die "usage: vm/build.sh [--qcow2]" ;; esac

tree=$BUILD_DIR/rootfs          # the overlay's mount point: the image's root filesystem
layer=$BUILD_DIR/overlay        # its upper (what this build writes) and work directories
proj=$tree$PROJECT_IN_GUEST
overlay_mounted=false
resolv_saved=""
prefetch_pid=""
offline=()
cleanup() {
  chroot_umount
  if [ -n "$resolv_saved" ]; then rm -f "$tree/etc/resolv.conf"; mv "$resolv_saved" "$tree/etc/resolv.conf"; fi
  resolv_saved=""
  if $overlay_mounted; then umount "$tree" || umount -l "$tree"; overlay_mounted=false; fi
  if [ -n "$prefetch_pid" ]; then kill "$prefetch_pid" 2>/dev/null || true; wait "$prefetch_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

ensure_host_tools
mkdir -p "$BUILD_DIR" "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"        # one build at a time on a machine: the cache is shared
flock -n 9 || { stage "waiting for another VM build on this machine ($CACHE_ROOT/.lock)"; flock 9; }
# A build killed outright can leave its overlay mounted: unmount it before anything else.
if mountpoint -q "$tree"; then umount "$tree"; fi
safe_rmtree "$tree"
safe_rmtree "$layer"

key=$("$REPO/vm/base.sh" --key)
base=$CACHE_ROOT/base-$key
venv_key=$(cat "$REPO/pyproject.toml" "$REPO/bootstrap.sh" | sha256sum | cut -c1-16)
venv_cache=$base/venv-$venv_key          # holds tree/<project>/.venv, a layer of the overlay

# --- wheels for a venv not cached yet, fetched on the host while the base builds ---------------
# Only an optimisation for a first build: if the host has no pip for Python 3.11 or a wheel is
# missing, bootstrap.sh in the image simply installs from PyPI itself.
wheels=$CACHE_ROOT/wheels-$venv_key
if [ ! -f "$venv_cache/COMPLETE" ] && [ ! -d "$wheels" ] \
   && python3 -c 'import sys, pip; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  stage "venv: building a wheelhouse on the host meanwhile (log: $wheels.txt)"
  mapfile -t reqs < <(python3 -c 'import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + p.get("optional-dependencies", {}).get("test", [])))' "$REPO/pyproject.toml")
  ( safe_rmtree "$wheels.partial"
    python3 -m pip wheel -q -w "$wheels.partial" pip 'setuptools>=77' wheel "${reqs[@]}" > "$wheels.txt" 2>&1 \
      && mv "$wheels.partial" "$wheels" ) &
  prefetch_pid=$!
fi

# --- the base system, cached per package list and recipe --------------------------------------
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
find "$CACHE_ROOT" -maxdepth 1 \( -name 'base-*' -o -name 'wheels-*' \) ! -name "base-$key" -mtime +14 -print0 \
  | while IFS= read -r -d '' old; do stage "removing unused cache $old"; safe_rmtree "$old"; done

stage "mounting the image tree (overlay: cached base + cached venv + this build)"
mkdir -p "$tree" "$layer/upper" "$layer/work"
lower=$base/rootfs
[ -f "$venv_cache/COMPLETE" ] && lower=$venv_cache/tree:$lower
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$layer/upper,workdir=$layer/work" "$tree"
overlay_mounted=true

# --- the project: a git checkout of this one, plus its uncommitted and untracked files ---------
stage "copying the project into $PROJECT_IN_GUEST"
git() { command git -c safe.directory='*' "$@"; }   # make runs us through sudo in a user's clone
git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 || die "$REPO is not a git checkout"
src=$BUILD_DIR/project
safe_rmtree "$src"
git clone -q --no-hardlinks "$REPO" "$src"
git -C "$src" remote remove origin
changed=$BUILD_DIR/changed-files.txt
: > "$changed"
while IFS= read -r -d '' f; do
  if [ -e "$REPO/$f" ] || [ -L "$REPO/$f" ]; then printf '%s\0' "$f" >> "$changed"; else rm -f "$src/$f"; fi
done < <(git -C "$REPO" ls-files -z --modified --others --exclude-standard)
tar -C "$REPO" --null -T "$changed" -cf - | tar -C "$src" -xf -
dirty=$(git -C "$src" status --porcelain --untracked-files=no | wc -l)
mkdir -p "$proj"
cp -a "$src/." "$proj/"
safe_rmtree "$src"

# --- the venv: bootstrap.sh in a chroot ----------------------------------------------------------
# bootstrap.sh would start the OVS daemons and could call apt-get: inside a build chroot nothing may
# start (stubs that do nothing) and every package must already be in the base (a stub that fails).
# With the venv layer present it finds .venv installed and only checks it.
shims=$tree/tmp/fsvm-shims
mkdir -p "$shims"
for t in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl systemctl; do
  printf '#!/bin/sh\nexit 0\n' > "$shims/$t"
done
printf '#!/bin/sh\necho "vm/build.sh: bootstrap.sh wants apt-get $*, but the image has no such package; vm/lib.sh reads its apt_pkgs list" >&2\nexit 1\n' \
  > "$shims/apt-get"
chmod +x "$shims"/*
# Downloads use the host's DNS and trust store (a site may inspect TLS with its own CA); the
# image keeps Debian's own resolv.conf and certificates.
resolv_saved=$tree/etc/resolv.conf.fsvm-saved
mv "$tree/etc/resolv.conf" "$resolv_saved"
cp -L /etc/resolv.conf "$tree/etc/resolv.conf"
pip_env=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$shims/host-ca.crt"
  pip_env+=(PIP_CERT=/tmp/fsvm-shims/host-ca.crt SSL_CERT_FILE=/tmp/fsvm-shims/host-ca.crt)
fi
if [ -f "$venv_cache/COMPLETE" ]; then
  stage "venv: cached ($venv_cache)"
  touch "$proj/.venv/.factorysat-installed"   # newer than the fresh pyproject.toml: no pip run
else
  if [ -n "$prefetch_pid" ]; then
    wait "$prefetch_pid" || true
    prefetch_pid=""
  fi
  if [ -d "$wheels" ]; then
    cp -r "$wheels" "$tree/tmp/fsvm-wheels"
    offline=(PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/fsvm-wheels)
    stage "venv: pip install inside the image from the host's wheelhouse"
  else
    offline=()
    stage "venv: pip install inside the image from PyPI (~1 min)"
  fi
fi
run_bootstrap() {
  in_chroot "$tree" /usr/bin/env PATH=/tmp/fsvm-shims:/usr/sbin:/usr/bin:/sbin:/bin "${pip_env[@]}" "$@" \
    /bin/bash -c "cd '$PROJECT_IN_GUEST' && ./bootstrap.sh" 2>&1 | sed 's/^/  | /'
}
chroot_mount "$tree"
failed="bootstrap.sh failed inside the image (output above; pip log: $proj/.venv/pip-install.txt)"
if [ "${#offline[@]}" -eq 0 ]; then
  run_bootstrap || die "$failed"
elif ! run_bootstrap "${offline[@]}"; then
  stage "venv: the wheelhouse was not enough; pip install from PyPI instead"
  rm -rf "$proj/.venv"
  run_bootstrap || die "$failed"
fi
# Byte-compile the project too (pip did the venv): a TCG guest starts many Python processes.
in_chroot "$tree" "$PROJECT_IN_GUEST/.venv/bin/python" -m compileall -q -j 0 -x '/\.(venv|git)/' \
  "$PROJECT_IN_GUEST" >/dev/null
cleanup_chroot() { chroot_umount; rm -f "$tree/etc/resolv.conf"; mv "$resolv_saved" "$tree/etc/resolv.conf"; resolv_saved=""; }
cleanup_chroot
rm -rf "${tree:?}"/tmp/fsvm-* "${tree:?}"/run/openvswitch "${tree:?}"/root/.cache

# The user owns the project (files from the cached layers already do: find only touches others).
uid_gid=$(awk -F: -v u="$VM_USER" '$1 == u { print $3 ":" $4 }' "$tree/etc/passwd")
find "$proj" ! -user "${uid_gid%:*}" -print0 | xargs -0 -r chown -h "$uid_gid"
if [ ! -f "$venv_cache/COMPLETE" ]; then
  stage "venv: saving it to the cache"
  safe_rmtree "$venv_cache"
  mkdir -p "$venv_cache/tree$PROJECT_IN_GUEST"
  # The layer's directories hide the base's: same owner and mode (the user's home is theirs).
  d=$PROJECT_IN_GUEST
  while [ "$d" != / ]; do
    chown --reference="$tree$d" "$venv_cache/tree$d"; chmod --reference="$tree$d" "$venv_cache/tree$d"
    d=$(dirname "$d")
  done
  cp -a "$proj/.venv" "$venv_cache/tree$PROJECT_IN_GUEST/"
  touch "$venv_cache/COMPLETE"
fi

cat > "$tree/etc/factorysat-image" <<EOF
built_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
source_commit=$(git -C "$REPO" rev-parse HEAD)
source_uncommitted_files=$dirty
base_cache_key=$key
venv_cache_key=$venv_key
kernel=$(basename "$(readlink "$tree/vmlinuz")")
login=$VM_USER/$VM_USER
project=$PROJECT_IN_GUEST
EOF
cp -L "$tree/vmlinuz" "$BUILD_DIR/vmlinuz"
cp -L "$tree/initrd.img" "$BUILD_DIR/initrd.img"

# --- the disk: MBR, one ext4 partition from 1 MiB, GRUB in the MBR and the gap after it ---------
disk_gb=${FACTORYSAT_VM_DISK_GB:-8}
stage "writing the ${disk_gb} GB disk (sparse): partition table, ext4 filled from the image tree, GRUB"
tmp=$IMAGE_RAW.partial
rm -f "$tmp"
truncate -s "${disk_gb}G" "$tmp"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$tmp"
mkfs.ext4 -q -F -L factorysat -U "$ROOT_UUID" -E offset=$((2048 * 512)) -d "$tree" "$tmp" \
  "$((disk_gb * 1024 - 1))M"
core=$base/core.img
[ "$(stat -c %s "$core")" -lt $((2047 * 512)) ] || die "GRUB core.img does not fit before the partition"
dd if="$base/boot.img" of="$tmp" bs=440 count=1 conv=notrunc status=none   # keeps the partition table
printf '\x90\x90' | dd of="$tmp" bs=1 seek=$((0x66)) conv=notrunc status=none  # as grub-bios-setup: trust BIOS drive
dd if="$core" of="$tmp" bs=512 seek=1 conv=notrunc status=none                 # boot.img loads sector 1
mv "$tmp" "$IMAGE_RAW"
cleanup
safe_rmtree "$tree"
safe_rmtree "$layer"

if $qcow2; then
  stage "compressing to qcow2 (~2 min)"
  qemu-img convert -c -O qcow2 "$IMAGE_RAW" "$IMAGE_QCOW2.partial"
  mv "$IMAGE_QCOW2.partial" "$IMAGE_QCOW2"
  (cd "$BUILD_DIR" && sha256sum "$(basename "$IMAGE_QCOW2")" > "$(basename "$IMAGE_QCOW2").sha256")
  stage "image: $IMAGE_QCOW2 ($(du -h "$IMAGE_QCOW2" | cut -f1); login $VM_USER/$VM_USER; README: \"The VM image\")"
else
  stage "disk: $IMAGE_RAW ($(du -h "$IMAGE_RAW" | cut -f1) used of ${disk_gb} GB)"
fi
