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

for tool in mmdebstrap mkfs.ext4 qemu-img tar gzip xz readelf; do
  command -v "$tool" >/dev/null || { echo "debian-box: '$tool' is missing (apt-get install mmdebstrap e2fsprogs qemu-utils xz-utils binutils)" >&2; exit 1; }
done
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
started=$SECONDS

step "mmdebstrap $SUITE into $work/root"
# shellcheck disable=SC2086
packages=$(echo $BASE_PACKAGES $EXTRA_PACKAGES | tr ' ' ',')
mmdebstrap --variant=minbase --include="$packages" \
  --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
  --setup-hook="cp '$lib/debian-rootfs/etc/initramfs-tools/conf.d/env.conf' \"\$1/etc/initramfs-tools/conf.d/\"" \
  --setup-hook='printf "%s\n" virtio_pci virtio_blk ext4 > "$1/usr/share/initramfs-tools/modules.d/env-virtio"' \
  --customize-hook="'$lib/customize-debian.sh' \"\$1\" '$lib/debian-rootfs' '$keys/insecure_ed25519.pub'" \
  "$SUITE" "$work/root" </dev/null

step "extract kernel, initrd and package manifest"
kernel=$(ls "$work"/root/boot/vmlinuz-* | sort -V | tail -n1)
mkdir "$work/box"
cp "$kernel" "$work/box/vmlinuz"
kver=$(basename "$kernel" | sed 's/^vmlinuz-//')
boot_kernel=vmlinuz
if extract_vmlinux "$kernel" "$work/box/vmlinux"; then boot_kernel=vmlinux; fi
make_initrd "$work/root" "$kver" "$work/box/initrd.img"
chroot "$work/root" dpkg-query -W -f '${Package}\t${Version}\n' > "$work/box/packages.txt"

step "make a ${DISK_GIB} GiB ext4 image and convert it to qcow2"
mkfs.ext4 -q -L root -d "$work/root" -E lazy_itable_init=1,lazy_journal_init=1 "$work/root.img" "${DISK_GIB}G"
rm -rf "$work/root"
qemu-img convert -c -O qcow2 "$work/root.img" "$work/box/box.img"
rm -f "$work/root.img"

kernel_version=$(basename "$kernel" | sed 's/^vmlinuz-//')
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
cat > "$work/box/info.json" <<JSON
{
  "name": "$BOX_NAME",
  "version": "$BOX_VERSION",
  "suite": "$SUITE",
  "kernel": "$kernel_version",
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "packages": $(wc -l < "$work/box/packages.txt")
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

step "pack $output"
# gzip -1: the qcow2 is compressed already, the raw vmlinux shrinks to a third.
tar -C "$work/box" -cf - metadata.json info.json Vagrantfile packages.txt initrd.img $(cd "$work/box" && ls vmlinu*) box.img \
  | gzip -1 > "$partial"
mv -f "$partial" "$output"
step "built $output ($(du -h "$output" | cut -f1)) in $((SECONDS - started)) s"
