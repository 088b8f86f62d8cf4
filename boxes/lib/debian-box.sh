#!/usr/bin/env bash
# Builds a Debian box from a recipe config: debian-box.sh CONFIG.sh OUTPUT.box
#
# No mounts, no loop devices: mmdebstrap makes the root tree, mkfs.ext4 -d fills
# a filesystem image from it, qemu-img turns that into a compressed qcow2. The
# output appears atomically: a failed or interrupted build leaves nothing behind.
set -euo pipefail

config=${1:?usage: debian-box.sh CONFIG.sh OUTPUT.box}
output=${2:?usage: debian-box.sh CONFIG.sh OUTPUT.box}
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
[ "$(id -u)" = 0 ] || { echo "debian-box: run as root (mmdebstrap keeps file owners only as root)" >&2; exit 1; }

outdir=$(cd "$(dirname "$output")" && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/env-box.XXXXXX")
partial="$outdir/.$(basename "$output").partial.$$"
cleanup() { rm -rf "$work" "$partial"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

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
started=$SECONDS

step "mmdebstrap $SUITE into $work/root"
# shellcheck disable=SC2086
packages=$(echo $BASE_PACKAGES $EXTRA_PACKAGES | tr ' ' ',')
mmdebstrap --variant=minbase --include="$packages" \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
  --setup-hook="cp '$lib/debian-rootfs/etc/initramfs-tools/conf.d/env.conf' \"\$1/etc/initramfs-tools/conf.d/\"" \
  --setup-hook='printf "%s\n" virtio_pci virtio_blk ext4 > "$1/usr/share/initramfs-tools/modules.d/env-virtio"' \
  --customize-hook="'$lib/customize-debian.sh' \"\$1\" '$lib/debian-rootfs' '$pubkey'" \
  "$SUITE" "$work/root" </dev/null

# mmdebstrap is done with the tree's /tmp (its apt configuration lived there).
find "$work/root/tmp" -mindepth 1 -delete
step "extract the kernel and the package manifest"
kernel=$(ls "$work"/root/boot/vmlinuz-* | sort -V | tail -n1)
kver=$(basename "$kernel" | sed 's/^vmlinuz-//')
mkdir "$work/box"
chroot "$work/root" dpkg-query -W -f '${Package}\t${Version}\n' > "$work/box/packages.txt"
disk_bytes=$((DISK_GIB * 1024 * 1024 * 1024))
# The root filesystem: no orphan_file, which GRUB 2.06 cannot read.
mkfs_root() { mkfs.ext4 -q -L root -O ^orphan_file -d "$work/root" -E "lazy_itable_init=1,lazy_journal_init=1$1" "$2" "$3"; }

if [ "$BOOT" = kernel ]; then
  cp "$kernel" "$work/box/vmlinuz"
  boot_kernel=vmlinuz
  if extract_vmlinux "$kernel" "$work/box/vmlinux"; then boot_kernel=vmlinux; fi
  make_initrd "$work/root" "$kver" "$work/box/initrd.img"
  boot_files="initrd.img $(cd "$work/box" && ls vmlinu*)"
  step "make a ${DISK_GIB} GiB ext4 image and convert it to qcow2"
  # Root on the whole virtio disk: no partition table, so growing is one resize2fs.
  printf '/dev/vda\t/\text4\tdefaults,noatime\t0\t0\n' > "$work/root/etc/fstab"
  mkfs_root "" "$work/disk.raw" "${DISK_GIB}G"
else
  step "install GRUB and make a ${DISK_GIB} GiB disk with an MBR, GRUB and an ext4 partition"
  install_grub "$work/root" "$kver" "$work/core.img"
  boot_files=""
  printf 'LABEL=root\t/\text4\tdefaults,noatime\t0\t0\n' > "$work/root/etc/fstab"
  truncate -s "$disk_bytes" "$work/disk.raw"
  # One partition from 1 MiB: GRUB's core image sits in the gap before it.
  printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$work/disk.raw"
  mkfs_root ",offset=1048576" "$work/disk.raw" "$(((disk_bytes - 1048576) / 1024))k"
  # GRUB's boot sector (the code part only: the partition table stays), then
  # its core image from the second sector, where the boot sector looks for it.
  dd if="$work/root/usr/lib/grub/i386-pc/boot.img" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
  dd if="$work/core.img" of="$work/disk.raw" bs=512 seek=1 conv=notrunc status=none
fi
rm -rf "$work/root"
qemu-img convert -c -O qcow2 "$work/disk.raw" "$work/box/box.img"
rm -f "$work/disk.raw"

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
