#!/usr/bin/env bash
# Times `env up` against the raw equivalent (plain qemu-system-x86_64 booting
# the same box, polling `ssh true`), then the everyday commands. TCG, 2 vCPUs,
# 1 GiB. Usage: bench/up.sh   (RUNS=3, BOX=FILE.box, ENV_BIN=...)
source "$(dirname "$0")/lib.sh"
export ENV_ACCEL=tcg
setup_home
box_dir=$(ls -d "$ENV_HOME"/boxes/debian-12/*/)
key=$(mktemp); cp "$repo/boxes/keys/insecure_ed25519" "$key"; chmod 600 "$key"
meta() { python3 -c "import json,sys; print(json.load(open('$box_dir/metadata.json'))['env']['$1'])"; }

# Boots a fresh overlay of BACKING under plain QEMU (boot arguments after
# KEY; none: firmware and the disk's bootloader), polls `ssh true` with KEY
# and prints the seconds it took: raw_boot BACKING KEY [QEMU ARGS...]
raw_boot() {
  local backing=$1 key=$2 work port t
  shift 2
  work=$(mktemp -d)
  qemu-img create -q -f qcow2 -F qcow2 -b "$backing" "$work/disk.qcow2"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  t=$(now)
  qemu-system-x86_64 -nodefaults -display none -machine q35,accel=tcg -smp 2 -m 1024M "$@" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0,romfile= \
    -device virtio-rng-pci -serial "file:$work/console.log" -daemonize -pidfile "$work/qemu.pid"
  wait_ssh_true "$port" "$key"
  elapsed "$t"
  kill "$(cat "$work/qemu.pid")"; rm -rf "$work"
}

raw_times=() env_times=() ssh_times=() status_times=() halt_times=() destroy_times=()
for run in $(seq "$RUNS"); do
  # (a) plain QEMU + polling ssh
  raw_times+=("$(raw_boot "$box_dir/box.img" "$key" \
    -kernel "$box_dir/$(meta kernel)" -initrd "$box_dir/$(meta initrd)" -append "$(meta cmdline)")")

  # (b) env up, then the everyday commands on the running machine
  project=$(mktemp -d)
  printf '[defaults]\nbox = "debian-12"\ncpus = 2\nmemory = "1G"\n' > "$project/Envfile"
  cd "$project"
  t=$(now); "$ENV_BIN" up >/dev/null 2>&1; env_times+=("$(elapsed "$t")")
  t=$(now); for _ in 1 2 3 4 5 6 7 8 9 10; do "$ENV_BIN" ssh -- true; done; ssh_times+=("$(echo "$(elapsed "$t") / 10" | bc -l)")
  t=$(now); for _ in 1 2 3 4 5 6 7 8 9 10; do "$ENV_BIN" status >/dev/null; done; status_times+=("$(echo "$(elapsed "$t") / 10" | bc -l)")
  t=$(now); "$ENV_BIN" halt >/dev/null 2>&1; halt_times+=("$(elapsed "$t")")
  "$ENV_BIN" up >/dev/null 2>&1
  t=$(now); "$ENV_BIN" destroy -f >/dev/null 2>&1; destroy_times+=("$(elapsed "$t")")
  cd /; rm -rf "$project"
  echo "run $run: raw ${raw_times[-1]} s, env up ${env_times[-1]} s" >&2
done

raw=$(printf '%s\n' "${raw_times[@]}" | mean)
up=$(printf '%s\n' "${env_times[@]}" | mean)
echo "| measure (mean of $RUNS) | env | raw / reference | ratio |"
echo "|---|---|---|---|"
echo "| boot to SSH: env up vs plain qemu + ssh poll | ${up} s | ${raw} s | $(ratio "$up" "$raw")x |"
echo "| env ssh -- true (running machine) | $(printf '%s\n' "${ssh_times[@]}" | mean) s | | |"
echo "| env status | $(printf '%s\n' "${status_times[@]}" | mean) s | | |"
echo "| env halt | $(printf '%s\n' "${halt_times[@]}" | mean) s | | |"
echo "| env destroy | $(printf '%s\n' "${destroy_times[@]}" | mean) s | | |"

# A box made for Vagrant (firmware + GRUB, Vagrant's key): env up against
# plain QEMU booting the same disk from its bootloader.
bios=$(bios_box)
vagrant_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant /opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant 2>/dev/null | head -n1 || true)
if [ -n "$bios" ] && [ -n "$vagrant_key" ]; then
  "$ENV_BIN" box add "$bios" --name vagrant-bios >/dev/null
  bios_dir=$(ls -d "$ENV_HOME"/boxes/vagrant-bios/*/)
  vkey=$(mktemp); cp "$vagrant_key" "$vkey"; chmod 600 "$vkey"
  bios_raw=() bios_env=()
  for run in $(seq "$RUNS"); do
    bios_raw+=("$(raw_boot "$bios_dir/box.img" "$vkey")")
    project=$(mktemp -d)
    printf '[defaults]\nbox = "vagrant-bios"\ncpus = 2\nmemory = "1G"\n' > "$project/Envfile"
    cd "$project"
    t=$(now); "$ENV_BIN" up >/dev/null 2>&1; bios_env+=("$(elapsed "$t")")
    "$ENV_BIN" destroy -f >/dev/null 2>&1
    cd /; rm -rf "$project"
    echo "bios run $run: raw ${bios_raw[-1]} s, env up ${bios_env[-1]} s" >&2
  done
  braw=$(printf '%s\n' "${bios_raw[@]}" | mean)
  benv=$(printf '%s\n' "${bios_env[@]}" | mean)
  echo "| Vagrant-style BIOS box, boot to SSH: env up vs plain qemu + ssh poll | ${benv} s | ${braw} s | $(ratio "$benv" "$braw")x |"
  rm -f "$vkey"
else
  echo "(no debian-12-bios box or no Vagrant key: the BIOS row is skipped)" >&2
fi
echo "(Vagrant's own figures need vagrant-libvirt and a running libvirtd: see docs/benchmarks.md.)" >&2
rm -rf "$ENV_HOME" "$key"
