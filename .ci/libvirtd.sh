#!/bin/sh
# Starts virtlogd and libvirtd as plain daemons (no init system in CI), with
# the default storage pool the tests use.
#
# On these CI machines /dev/kvm exists but nested KVM does not work. libvirt
# 9.0 then re-probes QEMU's capabilities on every domain lookup (the probe
# finds KVM unusable, the next lookup finds /dev/kvm present and calls the
# cache stale): 40-75 s per `virsh define`. So libvirtd runs in a mount
# namespace whose /dev lacks kvm; guests run under TCG, as every test does.
set -eu
pidof virtlogd >/dev/null || virtlogd -d
if ! pidof libvirtd >/dev/null; then
    rm -f /run/libvirtd.pid
    if [ -e /dev/kvm ] && [ "${ENV_LIBVIRT_KVM:-0}" != 1 ]; then
        unshare -m sh -c '
            set -e
            mkdir -p /run/env-host-dev
            mount --rbind /dev /run/env-host-dev
            mount -t tmpfs -o mode=755 env-dev /dev
            for entry in /run/env-host-dev/* /run/env-host-dev/.[!.]*; do
                [ -e "$entry" ] || [ -L "$entry" ] || continue
                name=${entry##*/}
                case $name in kvm | ptmx | pts) continue ;; esac
                if [ -L "$entry" ]; then
                    cp -a "$entry" /dev/
                elif [ -d "$entry" ]; then
                    mkdir -p "/dev/$name"
                    mount --rbind "$entry" "/dev/$name"
                else
                    touch "/dev/$name"
                    mount --bind "$entry" "/dev/$name"
                fi
            done
            # Consoles are ptys: a devpts of its own, ptmx inside it.
            mkdir -p /dev/pts
            mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
            ln -s pts/ptmx /dev/ptmx
            exec libvirtd -d'
    else
        libvirtd -d
    fi
    for _ in $(seq 1 50); do
        [ -S /run/libvirt/libvirt-sock ] && break
        sleep 0.2
    done
fi
virsh -q -c qemu:///system pool-info default >/dev/null 2>&1 || {
    virsh -q -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images
    virsh -q -c qemu:///system pool-autostart default
}
virsh -q -c qemu:///system pool-start default >/dev/null 2>&1 || true
