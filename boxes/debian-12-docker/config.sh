# Recipe for debian-12-docker: the debian-12 box with Debian's Docker
# (docker.io) installed, for env's tests of the docker provisioner, which
# would otherwise install it from the guest's package mirror at every run.
# Sourced by boxes/lib/debian-box.sh.
# shellcheck source=../debian-12/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/../debian-12/config.sh"

BOX_NAME="debian-12-docker"
# apparmor: Debian's kernel enables AppArmor, and Docker loads its profile
# with apparmor_parser (a Recommends of docker.io, which mmdebstrap leaves out).
EXTRA_PACKAGES="docker.io apparmor"
DISK_GIB=10
