#!/usr/bin/env bash
# The project-independent part of the VM image: a Debian 12 root filesystem (debootstrap minbase,
# stock kernel, systemd, every package bootstrap.sh installs, OVS, Mininet), the login user, the
# first-boot text and a GRUB core image. Built once per package list and recipe, then cached.
#
#   vm/base.sh --key     print the cache key (hash of this recipe, the guest texts, the package list)
#   vm/base.sh DIR       build the base into DIR (DIR/rootfs, DIR/core.img); DIR must not exist
set -euo pipefail
# shellcheck source=vm/lib.sh
source "$(dirname "$0")/lib.sh"

# Packages beyond bootstrap.sh's own list: kernel and init, login and admin comforts, GRUB's
# BIOS modules (installed into the MBR by vm/build.sh, no loop device), networking for users who
# give the VM a NIC (DHCP by systemd-networkd, DNS by systemd-resolved), ssh and git.
image_pkgs() {
  printf '%s\n' linux-image-amd64 systemd-sysv udev dbus grub-pc-bin \
    openvswitch-testcontroller procps psmisc sudo git ca-certificates openssh-server \
    systemd-resolved less vim-tiny bash-completion
  bootstrap_apt_pkgs
}

if [ "${1:-}" = --key ]; then
  { cat "$0" "$REPO/vm/guest/issue" "$REPO/vm/guest/motd"; echo "$SUITE"; image_pkgs | sort -u; } \
    | sha256sum | cut -c1-16
  exit 0
fi
[ $# = 1 ] || die "usage: vm/base.sh --key | vm/base.sh DIR"
need_root
out=$1
[ ! -e "$out" ] || die "$out exists"
mkdir -p "$out"
root=$out/rootfs
trap chroot_umount EXIT

# --- debootstrap: everything in one pass (the guest never needs apt) --------------------------
# Two stages, so that dpkg runs without fsync (a build, not a live system: ~1 min faster) and
# without docs, man pages and translations (copyright files stay; the image keeps that policy).
pkgs=$(image_pkgs | sort -u | paste -sd, -)
log=$out/debootstrap.txt
stage "debootstrap $SUITE: download (minbase + $(image_pkgs | sort -u | wc -l) packages; log: $log)"
if ! debootstrap --variant=minbase --foreign --include="$pkgs" "$SUITE" "$root" "$MIRROR" > "$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "debootstrap failed; full log: $log"
fi
echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/fsvm-unsafe-io"
printf '%s\n' '# factorysat VM image: no documentation or translations (copyright files are kept)' \
  'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
  'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
  'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias' \
  > "$root/etc/dpkg/dpkg.cfg.d/factorysat-nodoc"
stage "debootstrap $SUITE: install (~2 min)"
if ! in_chroot "$root" /debootstrap/debootstrap --second-stage >> "$log" 2>&1; then
  tail -n 20 "$log" >&2
  die "debootstrap (second stage) failed; full log: $log"
fi
rm "$root/etc/dpkg/dpkg.cfg.d/fsvm-unsafe-io"

# --- system configuration --------------------------------------------------------------------
stage "configuring the base system (user, services, first-boot text)"
echo factorysat-vm > "$root/etc/hostname"
printf '127.0.1.1\tfactorysat-vm\n' >> "$root/etc/hosts"
echo 'LANG=C.UTF-8' > "$root/etc/default/locale"
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$ROOT_UUID" > "$root/etc/fstab"
cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://security.debian.org/debian-security $SUITE-security main
EOF

# The login, as on Mininet's VM: a documented user and password, passwordless sudo (the
# Makefile re-runs itself through sudo). root stays locked.
in_chroot "$root" useradd --create-home --shell /bin/bash --groups sudo "$VM_USER"
echo "$VM_USER:$VM_USER" | in_chroot "$root" chpasswd
echo "$VM_USER ALL=(ALL) NOPASSWD:ALL" > "$root/etc/sudoers.d/factorysat"
chmod 0440 "$root/etc/sudoers.d/factorysat"
# Runs as root (make demo through sudo) read the git state of a checkout owned by the user.
printf '[safe]\n\tdirectory = %s\n' "$PROJECT_IN_GUEST" > "$root/etc/gitconfig"

install -m 0644 "$REPO/vm/guest/issue" "$root/etc/issue"
install -m 0644 "$REPO/vm/guest/motd" "$root/etc/motd"
rm -f "$root/etc/update-motd.d/10-uname"   # keep the motd to our text

# Services: the OVS test controller takes port 6653 (the project's controller's); waiting for a
# network that a VM without a NIC never gets would stall boot for 2 minutes; the first-boot
# wizard would stop the boot to ask for a root password and time zone.
in_chroot "$root" systemctl mask openvswitch-testcontroller.service systemd-networkd-wait-online.service \
  systemd-firstboot.service >/dev/null 2>&1
in_chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
cat > "$root/etc/systemd/network/80-dhcp.network" <<'EOF'
# Any NIC the VM is given (virtio, e1000, vmxnet3): DHCP. Emulated factory links are not touched.
[Match]
Name=en* eth*
[Network]
DHCP=yes
EOF
# Every image would share one ssh host key: remove them, generate at first boot instead.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat > "$root/etc/systemd/system/ssh.service.d/factorysat-keygen.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
# A per-machine id is made at first boot, not baked into every copy of the image.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# --- GRUB for BIOS boot (qemu, VirtualBox, VMware), written to the MBR by vm/build.sh ----------
stage "GRUB core image"
mkdir -p "$root/boot/grub"
cp -r "$root/usr/lib/grub/i386-pc" "$root/boot/grub/"
cat > "$root/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=3
set default=0
menuentry "factorysat VM (Debian GNU/Linux 12)" {
  search --no-floppy --fs-uuid --set=root $ROOT_UUID
  linux /vmlinuz root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8
  initrd /initrd.img
}
EOF
# (,msdos1): the first partition of the disk the BIOS booted from.
in_chroot "$root" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p '(,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 normal linux search search_fs_uuid serial terminal echo configfile test
cp "$root/boot/grub/i386-pc/core.img" "$root/boot/grub/i386-pc/boot.img" "$out/"

# --- slim down -------------------------------------------------------------------------------
in_chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "${root:?}"/run/* "$root"/tmp/* "$root"/var/log/*.log
echo "$pkgs" | tr , '\n' > "$out/packages.txt"
stage "base ready: $(du -sh "$root" | cut -f1)"
