# Recipe for the debian-12 box. Sourced by boxes/lib/debian-box.sh.
# Copy this folder to make a variant: change SUITE, add to EXTRA_PACKAGES.

# Box name and version recorded in the box's info.json.
BOX_NAME="debian-12"
BOX_VERSION="12.0.0"
# Debian suite fetched with mmdebstrap from its default mirror.
SUITE="bookworm"
# Packages every env box carries (SSH, sudo, Ansible's python3, 9p-capable kernel...).
BASE_PACKAGES="systemd-sysv acpid openssh-server sudo qemu-guest-agent
  python3 rsync ca-certificates iproute2 iputils-ping procps e2fsprogs
  linux-image-amd64 initramfs-tools zstd busybox-static"
# Extra packages for a variant.
EXTRA_PACKAGES=""
# Virtual size of the root disk in GiB; machines may grow it, never shrink it.
DISK_GIB=8
# Drivers loaded by env's minimal initrd: the root disk's, fw_cfg (host key
# from env) and virtio_net (the address env passes as env.ip=).
INITRD_MODULES="virtio_pci virtio_blk crc32c_generic ext4 qemu_fw_cfg virtio_net"
# Kernel command line for direct kernel boot.
CMDLINE="root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet cryptomgr.notests"
