# Recipe for debian-12-openrc-rpm: a stand-in for guests env cannot build
# here (Alpine and Gentoo boot OpenRC; Fedora, AlmaLinux and Rocky keep
# their packages in rpm's database). The debian-12 box with sysvinit
# starting OpenRC instead of systemd (no systemctl at all), and with rpm: one
# package (env-standin 1.2.3-4) installed by rpm, dpkg's database moved
# aside. env's tests check spec resources against it. Sourced by
# boxes/lib/debian-box.sh.
# shellcheck source=../debian-12/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/../debian-12/config.sh"

BOX_NAME="debian-12-openrc-rpm"
BASE_PACKAGES=${BASE_PACKAGES/systemd-sysv/sysvinit-core openrc}
EXTRA_PACKAGES="rpm"
INIT=openrc
PACKAGE_DB=rpm
