# Recipe for debian-12-bios: the debian-12 box as third parties make boxes for
# Vagrant's libvirt provider. Its disk boots through firmware and GRUB (no
# env boot extension), its metadata is plain Vagrant libvirt metadata and its
# first-contact key is Vagrant's insecure key. env's tests boot it to show
# such boxes work unchanged. Sourced by boxes/lib/debian-box.sh.
# shellcheck source=../debian-12/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/../debian-12/config.sh"

BOX_NAME="debian-12-bios"
# GRUB's BIOS modules and grub-mkimage (the box makes its own core image).
EXTRA_PACKAGES="grub-pc-bin"
BOOT=bios
FIRST_CONTACT_KEY=vagrant
# Kernel command line in /boot/grub/grub.cfg; the root partition by label.
CMDLINE="root=LABEL=root rw console=ttyS0 net.ifnames=0 quiet"
