#!/usr/bin/env bash
# Installs the host packages env needs on Debian/Ubuntu: QEMU, qemu-img, the
# OpenSSH client, and what box recipes use; with --tests also what only the
# test suite needs. Usage: scripts/install-host-deps.sh [--tests]
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

as_root apt-get update -qq
# qemu-system-x86 pins its own qemu-utils version: installing it alone would
# remove a newer qemu-img (from backports), so both come at the same version.
qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
# ovmf: UEFI machines; gpgv: sums-file signatures of the image index;
# dosfstools and mtools: the cloud-image recipe's EFI partition.
as_root apt-get install -y -qq --allow-downgrades \
  qemu-system-x86 "qemu-utils=$qemu_version" openssh-client \
  mmdebstrap uidmap e2fsprogs fdisk xz-utils binutils gzip tar python3 bc rsync zstd \
  ovmf gpgv dosfstools mtools >/dev/null
# For the ansible provisioner (and its tests); the full `ansible` collection
# bundle is not needed.
as_root apt-get install -y -qq --no-install-recommends ansible-core >/dev/null
# The Rust virtiofsd, for `type = "virtiofs"` folders (Debian 12's C
# virtiofsd cannot run unprivileged): built once from crates.io with cargo
# (which building env needs anyway), into /usr/local as root, else
# ~/.local.
if ! command -v virtiofsd >/dev/null && [ ! -x /usr/local/bin/virtiofsd ] && [ ! -x "$HOME/.local/bin/virtiofsd" ]; then
  as_root apt-get install -y -qq --no-install-recommends libseccomp-dev libcap-ng-dev pkg-config >/dev/null
  if command -v cargo >/dev/null; then
    if [ "$(id -u)" = 0 ]; then root=/usr/local; else root=$HOME/.local; fi
    cargo install --locked --quiet virtiofsd --root "$root"
  else
    echo "install-host-deps: no cargo, so no virtiofsd (virtio-fs folders): install Rust, then run this again" >&2
  fi
fi
# With --tests (what .ci/run passes): what only the test suite needs.
# Vagrant itself, for its insecure key (the Vagrant-style test box
# boxes/debian-12-bios carries it, and env finds it where Vagrant installs
# it) and to check that Vagrant reads env's boxes and catalogs.
if [ "${1:-}" = --tests ]; then
  # python3-yaml: tests/matrix.rs reads the CI examples as YAML.
  as_root apt-get install -y -qq --no-install-recommends vagrant python3-yaml >/dev/null
  # libvirt, for tests/libvirt.rs (the libvirt backend on this host and
  # through an sshd the test starts); .ci/libvirtd.sh starts the daemons.
  as_root apt-get install -y -qq --no-install-recommends libvirt-daemon-system libvirt-clients >/dev/null
  # sshd, for the tests of `env verify --ssh` (they start their own on
  # 127.0.0.1 with a throwaway key). Installing it must not start a
  # listening sshd on the machine: when none is installed, the service is
  # kept from starting (policy-rc.d) and from starting at boot.
  if [ ! -x /usr/sbin/sshd ]; then
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
      as_root chmod 755 "$policy"
      trap 'as_root rm -f "$policy"' EXIT
    fi
    as_root apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      as_root systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
  fi
fi
