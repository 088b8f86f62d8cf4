#!/usr/bin/env bash
# mmdebstrap customize hook: turns a fresh Debian tree into an env/Vagrant box.
# customize-debian.sh ROOT ROOTFS_OVERLAY FIRST_CONTACT_PUBKEY [INIT [PACKAGE_DB]]
# (INIT: systemd or openrc; PACKAGE_DB: dpkg or rpm, see debian-box.sh.)
set -euo pipefail
root=$1 overlay=$2 pubkey=$3 init=${4:-systemd} package_db=${5:-dpkg}
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

# QEMU's user-mode DNS until a DHCP lease says otherwise (env-resolvconf).
printf 'nameserver 10.0.2.3\n' > "$root/etc/resolv.conf"

if [ "$init" = systemd ]; then
  in_root systemctl enable systemd-networkd.service env-resolvconf.path env-growfs.service ssh.service acpid.service
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

else
  # OpenRC (started by sysvinit): no networkd, no units. env's initrd sets
  # the user-mode address and the host key before init runs; sshd and acpid
  # start from their init scripts, env-boot does the rest.
  rm -rf "$root/etc/systemd"
  for service in ssh acpid; do in_root rc-update add "$service" default >/dev/null; done
  sed -i 's|^action=.*|action=/sbin/poweroff|' "$root/etc/acpi/events/env-powerbtn"
  cat > "$root/etc/init.d/env-boot" <<'RC'
#!/sbin/openrc-run
# What systemd-networkd and env-growfs do in env's other boxes: the default
# route QEMU's user network gives by DHCP, the root grown to its disk.
description="env: default route and root filesystem size"
start() {
  ip route add default via 10.0.2.2 dev eth0 2>/dev/null || true
  /usr/local/sbin/env-growfs || true
}
RC
  chmod 0755 "$root/etc/init.d/env-boot"
  in_root rc-update add env-boot default >/dev/null
  # Boot steps a throw-away VM does not need, each seconds under TCG (udev:
  # env's initrd loaded the disk's and network's drivers, devtmpfs has the
  # nodes, the kernel loads the rest on demand).
  for service in udev hwclock.sh checkfs.sh urandom brightness mountnfs.sh mountnfs-bootclean.sh; do
    in_root rc-update del "$service" sysinit >/dev/null 2>&1 || true
  done
  # The power button reaches acpid as an input device (ACPI's button
  # driver, evdev), which udev would load.
  printf 'button\nevdev\n' >> "$root/etc/modules"
  for service in bootlogs rsync; do in_root rc-update del "$service" default >/dev/null 2>&1 || true; done
fi

if [ "$package_db" = rpm ]; then
  # One package installed by rpm, built here: what an rpm-based guest's
  # spec checks read (version 1.2.3, release 4).
  mkdir -p "$root/tmp/env-rpm/SPECS"
  cat > "$root/tmp/env-rpm/SPECS/env-standin.spec" <<'SPEC'
Name: env-standin
Version: 1.2.3
Release: 4
Summary: A package installed by rpm in env's stand-in box
License: MIT
BuildArch: noarch
%description
Installed by rpm so that env's spec checks read rpm's database.
%install
mkdir -p %{buildroot}/usr/share/env-standin
echo rpm > %{buildroot}/usr/share/env-standin/installed-by
%files
/usr/share/env-standin/installed-by
SPEC
  in_root rpmbuild --quiet --define '_topdir /tmp/env-rpm' -bb /tmp/env-rpm/SPECS/env-standin.spec
  in_root sh -c 'rpm -i --nodeps /tmp/env-rpm/RPMS/noarch/env-standin-*.rpm'
  rm -rf "$root/tmp/env-rpm"
fi

# Smaller box: no apt lists, caches, docs or man pages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
# Not /tmp: mmdebstrap keeps its apt configuration there until its own
# cleanup, which, without it, would run `apt-get update`/`clean` against the
# host's apt state instead of the box's. debian-box.sh empties /tmp after.
rm -rf "$root"/var/log/*.log "$root"/var/log/apt/*
