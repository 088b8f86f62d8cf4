#!/usr/bin/env bash
# mmdebstrap customize hook: turns a fresh Debian tree into an env/Vagrant box.
# customize-debian.sh ROOT ROOTFS_OVERLAY FIRST_CONTACT_PUBKEY
set -euo pipefail
root=$1 overlay=$2 pubkey=$3
in_root() { chroot "$root" "$@"; }

# Configuration files shipped with the recipe.
# Owned by whoever runs the hook (root, or root of mmdebstrap's namespace):
# the recipe files' owner on the host means nothing in the box.
cp -a --no-preserve=ownership "$overlay/." "$root/"
chmod 0440 "$root/etc/sudoers.d/vagrant"

# Vagrant conventions: user vagrant, password-less sudo, the well-known key
# (replaced by a per-machine key on first contact). No password: keys only.
in_root useradd --create-home --shell /bin/bash --groups sudo vagrant
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$pubkey" "$root/home/vagrant/.ssh/authorized_keys"

echo debian > "$root/etc/hostname"
# The 127.0.1.1 line sits in env's block, which env rewrites with the
# machine's name and its neighbours on the private network.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n# BEGIN env hosts (managed by env: edits here are replaced)\n127.0.1.1\tdebian\n# END env hosts\n' > "$root/etc/hosts"
# /etc/fstab is written by debian-box.sh: it depends on the disk layout.

# Every machine must be unique: no host keys, no machine id, no seed in the box.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"

in_root systemctl enable systemd-networkd.service env-resolvconf.path env-growfs.service ssh.service acpid.service
# DNS servers come from the DHCP lease (env-resolvconf), not systemd-resolved.
printf 'nameserver 10.0.2.3\n' > "$root/etc/resolv.conf"
# sshd listens on every address and needs no configured network, no udev
# coldplug and no basic.target to start: the override in /etc starts it as
# soon as the filesystems and /run are ready, seconds earlier under TCG.
sed -e '/^After=/s/ *network\.target//' -e '/^After=/s/=  */=/' \
  -e 's/^\[Unit\]$/[Unit]\nDefaultDependencies=no\nAfter=local-fs.target systemd-tmpfiles-setup.service systemd-journald.socket\nBefore=shutdown.target multi-user.target\nConflicts=shutdown.target/' \
  "$root/lib/systemd/system/ssh.service" > "$root/etc/systemd/system/ssh.service"

# Generators run at every boot before any unit starts, each a process start
# under TCG; these have nothing to find in a VM made from this box.
mkdir -p "$root/etc/systemd/system-generators"
for generator in systemd-gpt-auto-generator systemd-sysv-generator systemd-rc-local-generator \
  systemd-hibernate-resume-generator systemd-bless-boot-generator systemd-cryptsetup-generator \
  systemd-veritysetup-generator systemd-integritysetup-generator systemd-system-update-generator \
  systemd-debug-generator systemd-run-generator; do
  ln -sf /dev/null "$root/etc/systemd/system-generators/$generator"
done

# Units a throw-away VM does not need, each costing boot time under TCG.
in_root systemctl mask \
  systemd-networkd-wait-online.service e2scrub_reap.service e2scrub_all.timer \
  apt-daily.timer apt-daily-upgrade.timer fstrim.timer \
  systemd-firstboot.service getty@tty1.service \
  systemd-pstore.service systemd-remount-fs.service systemd-binfmt.service \
  proc-sys-fs-binfmt_misc.automount sys-fs-fuse-connections.mount sys-kernel-config.mount \
  sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount \
  modprobe@configfs.service modprobe@dm_mod.service modprobe@drm.service \
  modprobe@fuse.service modprobe@loop.service modprobe@efi_pstore.service \
  systemd-sysusers.service systemd-journal-flush.service kmod-static-nodes.service \
  systemd-update-utmp.service systemd-update-utmp-runlevel.service \
  systemd-network-generator.service systemd-tmpfiles-clean.timer dpkg-db-backup.timer \
  systemd-hwdb-update.service ldconfig.service getty-static.service dev-mqueue.mount \
  systemd-random-seed.service systemd-modules-load.service

# Faster journald and no persistent journal growing in the image.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' > "$root/etc/systemd/journald.conf.d/10-env.conf"

# Smaller box: no apt lists, caches, docs or man pages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
# Not /tmp: mmdebstrap keeps its apt configuration there until its own
# cleanup, which, without it, would run `apt-get update`/`clean` against the
# host's apt state instead of the box's. debian-box.sh empties /tmp after.
rm -rf "$root"/var/log/*.log "$root"/var/log/apt/*
