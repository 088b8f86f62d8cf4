#!/usr/bin/env bash
# Builds a Debian box from a recipe config: debian-box.sh CONFIG.sh OUTPUT.box
#
# No mounts, no loop devices, and no root where the host allows it: mmdebstrap
# makes the root tree (as root, or in its unshare mode as an ordinary user with
# a subordinate id range), and this script, run again as mmdebstrap's last
# hook (`--finish`) inside mmdebstrap's namespace, where the tree's files are
# owned by root, makes the kernel, initrd, bootloader, package manifest and
# the ext4 disk image with mkfs.ext4 -d. qemu-img then turns the image into a
# compressed qcow2. The output appears atomically: a failed or interrupted
# build leaves nothing behind.
set -euo pipefail

config=${1:?usage: debian-box.sh CONFIG.sh OUTPUT.box}
output=${2:?usage: debian-box.sh CONFIG.sh OUTPUT.box}
# As mmdebstrap's last hook: debian-box.sh CONFIG.sh OUTPUT.box --finish ROOT OUTDIR
mode=${3:-} hook_root=${4:-} hook_out=${5:-}
lib=$(cd "$(dirname "$0")" && pwd)
keys=$(cd "$lib/../keys" && pwd)
# shellcheck source=/dev/null
source "$config"
# How the box boots: `kernel` (env's direct kernel boot: fast, the default) or
# `bios` (firmware, then GRUB from the disk's MBR: a box like the ones made
# for Vagrant's libvirt provider, bootable by anything).
BOOT=${BOOT:-kernel}
# The first-contact key in the box: env's well-known key, or `vagrant` for
# Vagrant's insecure key (taken from the host's Vagrant installation).
FIRST_CONTACT_KEY=${FIRST_CONTACT_KEY:-env}
# The box's init: `systemd` (Debian's default) or `openrc` (sysvinit starting
# OpenRC: a stand-in for Alpine's or Gentoo's init).
INIT=${INIT:-systemd}
# Whose database says what is installed: `dpkg`, or `rpm` (a stand-in for
# an rpm-based guest: an rpm package installed with rpm, dpkg's database
# moved aside once the box's package list is written).
PACKAGE_DB=${PACKAGE_DB:-dpkg}

for tool in mmdebstrap mkfs.ext4 qemu-img tar gzip xz readelf; do
  command -v "$tool" >/dev/null || { echo "debian-box: '$tool' is missing (apt-get install mmdebstrap e2fsprogs qemu-utils xz-utils binutils)" >&2; exit 1; }
done
case "$BOOT" in
  kernel) ;;
  bios) command -v sfdisk >/dev/null || { echo "debian-box: 'sfdisk' is missing (apt-get install fdisk)" >&2; exit 1; } ;;
  *) echo "debian-box: BOOT must be kernel or bios, not '$BOOT'" >&2; exit 1 ;;
esac
case "$FIRST_CONTACT_KEY" in
  env) pubkey="$keys/insecure_ed25519.pub" ;;
  vagrant)
    # Where Vagrant installs keep it: its own installer, or Debian's package.
    pubkey=""
    for candidate in /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub \
      /opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant.pub \
      /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub; do
      [ -f "$candidate" ] && pubkey=$candidate
    done
    [ -n "$pubkey" ] || { echo "debian-box: FIRST_CONTACT_KEY=vagrant needs Vagrant's insecure key (apt-get install vagrant)" >&2; exit 1; } ;;
  *) echo "debian-box: FIRST_CONTACT_KEY must be env or vagrant, not '$FIRST_CONTACT_KEY'" >&2; exit 1 ;;
esac
case "$INIT" in systemd|openrc) ;; *) echo "debian-box: INIT must be systemd or openrc, not '$INIT'" >&2; exit 1 ;; esac
case "$PACKAGE_DB" in dpkg|rpm) ;; *) echo "debian-box: PACKAGE_DB must be dpkg or rpm, not '$PACKAGE_DB'" >&2; exit 1 ;; esac
step() { printf '==> %s\n' "$*" >&2; }

# Extracts the uncompressed kernel from a bzImage: QEMU boots it through its
# PVH entry point, skipping firmware, real mode and decompression (4-5 s under
# TCG). Fails when the kernel has no PVH entry: extract_vmlinux VMLINUZ OUTPUT
extract_vmlinux() {
  local offset
  offset=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$1" | head -n1 | cut -d: -f1) || return 1
  [ -n "$offset" ] || return 1
  tail -c +$((offset + 1)) "$1" | xz -dc > "$2" 2>/dev/null || true
  if ! readelf -n "$2" 2>/dev/null | grep -q 'Xen.*0x00000012'; then
    rm -f "$2"
    return 1
  fi
}

# Builds env's minimal initrd (boxes/lib/initrd/init, static busybox and the
# root disk's drivers in dependency order): make_initrd ROOT KVER OUTPUT
make_initrd() {
  local root=$1 kver=$2 out=$3 dir
  dir="$root/tmp/env-initrd"
  mkdir "$dir"
  mkdir -p "$dir/bin"
  cp "$root/bin/busybox" "$dir/bin/busybox"
  cp "$lib/initrd/init" "$dir/init"
  local module
  # modprobe --show-depends takes one module at a time.
  for module in $INITRD_MODULES; do
    chroot "$root" modprobe -S "$kver" --show-depends "$module"
  done | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' > "$dir/modules.order"
  while read -r module; do
    case "$module" in *.ko) ;; *) echo "debian-box: compressed module $module is not supported" >&2; exit 1 ;; esac
    mkdir -p "$dir$(dirname "$module")"
    cp "$root$module" "$dir$module"
  done < "$dir/modules.order"
  # The box's own busybox packs the archive: the host needs no cpio.
  chroot "$root" /bin/busybox sh -c 'cd /tmp/env-initrd && find . | LC_ALL=C sort | busybox cpio -o -H newc' > "$out"
  rm -rf "$dir"
}
# Puts GRUB's BIOS files where grub-install would (/boot/grub) with a
# configuration that boots the box's kernel on the serial console, and writes
# the core image for the MBR gap (made by the box's own grub-mkimage: the
# host needs no GRUB): install_grub ROOT KVER CORE_IMG
install_grub() {
  local root=$1 kver=$2 core=$3
  mkdir -p "$root/boot/grub/i386-pc"
  cp "$root"/usr/lib/grub/i386-pc/*.mod "$root"/usr/lib/grub/i386-pc/*.lst "$root/boot/grub/i386-pc/"
  cat > "$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "Debian GNU/Linux ($kver)" {
  linux /boot/vmlinuz-$kver $CMDLINE
  initrd /boot/initrd.img-$kver
}
CFG
  chroot "$root" grub-mkimage -O i386-pc -o /tmp/core.img -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2
  mv "$root/tmp/core.img" "$core"
  [ "$(stat -c %s "$core")" -lt $((2047 * 512)) ] || { echo "debian-box: GRUB's core image does not fit before the partition" >&2; exit 1; }
}
# The part that runs in mmdebstrap's namespace, as its last hook: the tree
# at ROOT, what the box needs written to OUT (vmlinuz/vmlinux, initrd.img,
# packages.txt, disk.raw, kver). Its mounts (/proc, /sys, /dev) stay out of the
# disk image: a copy on one filesystem is what mkfs.ext4 -d reads.
finish() {
  local root=$1 out=$2 kernel kver
  # mmdebstrap's apt configuration stays until its own cleanup: without it,
  # that cleanup would run `apt-get update`/`clean` against the host's apt
  # state. The box's /tmp is emptied at every boot anyway.
  find "$root/tmp" -mindepth 1 -maxdepth 1 ! -name 'mmdebstrap.*' -exec rm -rf {} +
  kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
  kver=$(basename "$kernel" | sed 's/^vmlinuz-//')
  echo "$kver" > "$out/kver"
  chroot "$root" dpkg-query -W -f '${Package}\t${Version}\n' > "$out/packages.txt"
  if [ "$PACKAGE_DB" = rpm ]; then
    mv "$root/var/lib/dpkg" "$root/var/lib/dpkg.env-standin"
  fi
  local disk_bytes=$((DISK_GIB * 1024 * 1024 * 1024))
  if [ "$BOOT" = kernel ]; then
    cp "$kernel" "$out/vmlinuz"
    extract_vmlinux "$kernel" "$out/vmlinux" || true
    make_initrd "$root" "$kver" "$out/initrd.img"
    # Root on the whole virtio disk: no partition table, so growing is one resize2fs.
    printf '/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n' > "$root/etc/fstab"
  else
    install_grub "$root" "$kver" "$out/core.img"
    printf 'LABEL=root\t/\text4\tdefaults,noatime\t0\t0\n' > "$root/etc/fstab"
  fi
  step "copy the tree without mmdebstrap's mounts"
  mkdir "$out/tree"
  # /dev, /proc and /sys stay empty: the guest's kernel mounts them (device
  # nodes cannot be made in a user namespace anyway). Extended attributes
  # come along: file capabilities (ping's cap_net_raw) live in them.
  # (tar's status 1 is "a file changed as it was read": the mount points
  # of /proc and /sys do; nothing the box is made of.)
  copy_tree() {
    tar -C "$root" --one-file-system --numeric-owner --xattrs --xattrs-include='security.*' --xattrs-include='user.*' \
      --warning=no-file-changed --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . || [ $? = 1 ]
  }
  copy_tree | tar -C "$out/tree" --numeric-owner --xattrs --xattrs-include='security.*' --xattrs-include='user.*' -xpf -
  rm -f "$out/tree"/tmp/mmdebstrap.*
  # The root filesystem: no orphan_file, which GRUB 2.06 cannot read.
  mkfs_root() { mkfs.ext4 -q -L root -O ^orphan_file -d "$out/tree" -E "lazy_itable_init=1,lazy_journal_init=1$1" "$2" "$3"; }
  if [ "$BOOT" = kernel ]; then
    step "make a ${DISK_GIB} GiB ext4 image"
    mkfs_root "" "$out/disk.raw" "${DISK_GIB}G"
  else
    step "make a ${DISK_GIB} GiB disk with an MBR, GRUB and an ext4 partition"
    truncate -s "$disk_bytes" "$out/disk.raw"
    # One partition from 1 MiB: GRUB's core image sits in the gap before it.
    printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$out/disk.raw"
    mkfs_root ",offset=1048576" "$out/disk.raw" "$(((disk_bytes - 1048576) / 1024))k"
    # GRUB's boot sector (the code part only: the partition table stays), then
    # its core image from the second sector, where the boot sector looks for it.
    dd if="$root/usr/lib/grub/i386-pc/boot.img" of="$out/disk.raw" bs=440 count=1 conv=notrunc status=none
    dd if="$out/core.img" of="$out/disk.raw" bs=512 seek=1 conv=notrunc status=none
    rm -f "$out/core.img"
  fi
  rm -rf "$out/tree"
  # Readable by the user who runs the build (in unshare mode these files
  # belong to a subordinate id).
  find "$out" -mindepth 1 -exec chmod a+rX {} +
}

if [ "$mode" = --finish ]; then
  # A copy left half-made would belong to a subordinate id, which the user
  # who runs the build cannot remove: it goes here, on any exit.
  trap 'rm -rf "$hook_out/tree"' EXIT
  finish "$hook_root" "$hook_out"
  exit 0
fi

# Root, or mmdebstrap's unshare mode: an ordinary user needs a subordinate id
# range and newuidmap (package uidmap).
if [ "$(id -u)" != 0 ]; then
  user=$(id -un)
  if ! command -v newuidmap >/dev/null || ! grep -qs "^$user:" /etc/subuid || ! grep -qs "^$user:" /etc/subgid; then
    echo "debian-box: building as $user (not root) needs mmdebstrap's unshare mode: install uidmap and give $user a subordinate id range in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $user), or build as root" >&2
    exit 1
  fi
fi

outdir=$(cd "$(dirname "$output")" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/env-box.XXXXXX")
partial="$outdir/.$(basename "$output").partial.$$"
cleanup() { rm -rf "$work" "$partial"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
# The hook writes here from mmdebstrap's namespace (as a subordinate id when
# not root): the folder must let it in.
mkdir "$work/box"
chmod 0711 "$work"
chmod 0777 "$work/box"
started=$SECONDS

step "mmdebstrap $SUITE (mode: $([ "$(id -u)" = 0 ] && echo root || echo unshare))"
# shellcheck disable=SC2086
packages=$(echo $BASE_PACKAGES $EXTRA_PACKAGES | tr ' ' ',')
mmdebstrap --variant=minbase --include="$packages" \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
  --setup-hook="cp '$lib/debian-rootfs/etc/initramfs-tools/conf.d/env.conf' \"\$1/etc/initramfs-tools/conf.d/\"" \
  --setup-hook='printf "%s\n" virtio_pci virtio_blk ext4 > "$1/usr/share/initramfs-tools/modules.d/env-virtio"' \
  --customize-hook="'$lib/customize-debian.sh' \"\$1\" '$lib/debian-rootfs' '$pubkey' '$INIT' '$PACKAGE_DB'" \
  --customize-hook="'$lib/debian-box.sh' '$config' '$output' --finish \"\$1\" '$work/box'" \
  "$SUITE" /dev/null </dev/null

kver=$(cat "$work/box/kver")
rm -f "$work/box/kver"
if [ "$BOOT" = kernel ]; then
  boot_kernel=vmlinuz
  [ -f "$work/box/vmlinux" ] && boot_kernel=vmlinux
  boot_files="initrd.img $(cd "$work/box" && ls vmlinu*)"
else
  boot_files=""
fi
step "convert the disk image to a compressed qcow2"
qemu-img convert -c -O qcow2 "$work/box/disk.raw" "$work/box/box.img"
rm -f "$work/box/disk.raw"

if [ "$BOOT" = kernel ]; then
  cat > "$work/box/metadata.json" <<JSON
{
  "provider": "libvirt",
  "format": "qcow2",
  "virtual_size": $DISK_GIB,
  "env": {
    "kernel": "$boot_kernel",
    "initrd": "initrd.img",
    "cmdline": "$CMDLINE",
    "ssh_user": "vagrant",
    "ssh_host_key_fw_cfg": true
  }
}
JSON
  # Vagrant's libvirt provider boots the same files through this box Vagrantfile.
  cat > "$work/box/Vagrantfile" <<RUBY
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")
    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")
    libvirt.cmd_line = "$CMDLINE"
    libvirt.disk_bus = "virtio"
  end
end
RUBY
else
  # Plain Vagrant libvirt metadata: nothing env-specific, as third-party boxes.
  cat > "$work/box/metadata.json" <<JSON
{
  "provider": "libvirt",
  "format": "qcow2",
  "virtual_size": $DISK_GIB
}
JSON
  cat > "$work/box/Vagrantfile" <<RUBY
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
RUBY
fi
cat > "$work/box/info.json" <<JSON
{
  "name": "$BOX_NAME",
  "version": "$BOX_VERSION",
  "suite": "$SUITE",
  "kernel": "$kver",
  "boot": "$BOOT",
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "packages": $(wc -l < "$work/box/packages.txt")
}
JSON

step "pack $output"
# gzip -1: the qcow2 is compressed already, the raw vmlinux shrinks to a third.
# shellcheck disable=SC2086
tar -C "$work/box" -cf - metadata.json info.json Vagrantfile packages.txt $boot_files box.img \
  | gzip -1 > "$partial"
mv -f "$partial" "$output"
step "built $output ($(du -h "$output" | cut -f1)) in $((SECONDS - started)) s"
