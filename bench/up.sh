#!/usr/bin/env bash
# Times `env up` against the raw equivalent (plain qemu-system-x86_64 booting
# the same box, polling `ssh true`), then the everyday commands. TCG, 2 vCPUs,
# 1 GiB. Usage: bench/up.sh   (RUNS=3, BOX=FILE.box, ENV_BIN=...,
# ROWS="debian bios cloud libvirt" to pick the rows measured)
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

want() { [[ " ${ROWS:-debian bios cloud libvirt} " == *" $1 "* ]]; }
echo "| measure (mean of $RUNS) | env | raw / reference | ratio |"
echo "|---|---|---|---|"

raw_times=() env_times=() ssh_times=() status_times=() halt_times=() destroy_times=()
for run in $(seq "$RUNS"); do
  want debian || break
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

if want debian; then
raw=$(printf '%s\n' "${raw_times[@]}" | mean)
up=$(printf '%s\n' "${env_times[@]}" | mean)
echo "| boot to SSH: env up vs plain qemu + ssh poll | ${up} s | ${raw} s | $(ratio "$up" "$raw")x |"
echo "| env ssh -- true (running machine) | $(printf '%s\n' "${ssh_times[@]}" | mean) s | | |"
echo "| env status | $(printf '%s\n' "${status_times[@]}" | mean) s | | |"
echo "| env halt | $(printf '%s\n' "${halt_times[@]}" | mean) s | | |"
echo "| env destroy | $(printf '%s\n' "${destroy_times[@]}" | mean) s | | |"
fi

# A box made for Vagrant (firmware + GRUB, Vagrant's key): env up against
# plain QEMU booting the same disk from its bootloader.
bios=$(bios_box)
vagrant_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant /opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant 2>/dev/null | head -n1 || true)
if want bios && [ -n "$bios" ] && [ -n "$vagrant_key" ]; then
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
elif want bios; then
  echo "(no debian-12-bios box or no Vagrant key: the BIOS row is skipped)" >&2
fi
# A distribution's cloud image (boxes/debian-12-cloud: GRUB, stock kernel,
# cloud-init): env up to SSH and to "cloud-init finished" against plain
# QEMU booting the same image with a NoCloud seed made by hand with
# cloud-localds (apt-get install cloud-image-utils), its user's key in it.
cloud=$(cloud_image)
if want cloud && [ -n "$cloud" ] && command -v cloud-localds >/dev/null; then
  "$ENV_BIN" box add "$cloud" --name debian-12-cloud >/dev/null
  cloud_dir=$(ls -d "$ENV_HOME"/boxes/debian-12-cloud/*/)
  cloud_disk=$(ls "$cloud_dir"/*.img "$cloud_dir"/*.qcow2 2>/dev/null | head -n1 || true)
  ckey=$(mktemp -u); ssh-keygen -q -t ed25519 -N "" -f "$ckey"
  raw_ssh=() raw_done=() env_ssh=() env_done=()
  for run in $(seq "$RUNS"); do
    work=$(mktemp -d)
    printf '#cloud-config
ssh_authorized_keys:
  - %s
' "$(cat "$ckey.pub")" > "$work/user-data"
    printf 'instance-id: bench-%s
local-hostname: bench
' "$run" > "$work/meta-data"
    cloud-localds --filesystem vfat "$work/seed.img" "$work/user-data" "$work/meta-data"
    qemu-img create -q -f qcow2 -F qcow2 -b "$cloud_disk" "$work/disk.qcow2"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    t=$(now)
    qemu-system-x86_64 -nodefaults -display none -machine q35,accel=tcg -smp 2 -m 1024M \
      -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" -drive "file=$work/seed.img,if=virtio,format=raw,readonly=on" \
      -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0,romfile= \
      -device virtio-rng-pci -serial "file:$work/console.log" -daemonize -pidfile "$work/qemu.pid"
    cssh() { ssh -q -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=2 -o IdentitiesOnly=yes -i "$ckey" -p "$port" debian@127.0.0.1 "$@"; }
    until cssh true 2>/dev/null; do sleep 0.1; done
    raw_ssh+=("$(elapsed "$t")")
    cssh cloud-init status --wait >/dev/null 2>&1 || true
    raw_done+=("$(elapsed "$t")")
    kill "$(cat "$work/qemu.pid")"; rm -rf "$work"

    project=$(mktemp -d)
    printf '[defaults]\nbox = "debian-12-cloud"\ncpus = 2\nmemory = "1G"\n' > "$project/Envfile"
    cd "$project"
    t=$(now); log=$("$ENV_BIN" up 2>&1); env_done+=("$(elapsed "$t")")
    # `up in N s` is when SSH answered with the machine's key.
    env_ssh+=("$(printf '%s\n' "$log" | sed -n 's/.*up in \([0-9.]*\) s.*/\1/p' | head -n1)")
    "$ENV_BIN" destroy -f >/dev/null 2>&1
    cd /; rm -rf "$project"
    echo "cloud run $run: raw ssh ${raw_ssh[-1]} s, done ${raw_done[-1]} s; env ssh ${env_ssh[-1]} s, done ${env_done[-1]} s" >&2
  done
  rs=$(printf '%s\n' "${raw_ssh[@]}" | mean); rd=$(printf '%s\n' "${raw_done[@]}" | mean)
  es=$(printf '%s\n' "${env_ssh[@]}" | mean); ed=$(printf '%s\n' "${env_done[@]}" | mean)
  echo "| cloud image, boot to SSH: env up vs plain qemu + cloud-localds seed + ssh poll | ${es} s | ${rs} s | $(ratio "$es" "$rs")x |"
  echo "| cloud image, to cloud-init finished (env up returns) vs \`cloud-init status --wait\` | ${ed} s | ${rd} s | $(ratio "$ed" "$rd")x |"
  rm -f "$ckey" "$ckey.pub"
elif want cloud; then
  echo "(no debian-12-cloud image or no cloud-localds: the cloud rows are skipped)" >&2
fi
# The libvirt backend (#16): env up to SSH on this host's libvirt
# (qemu:///system) and through SSH to a "remote" host (an sshd started
# here on 127.0.0.1 with a throwaway key; qemu+ssh:// through a drop-in of
# /etc/ssh/ssh_config.d when root, else qemu+libssh://), against the local
# backend, same box, same run; then `vagrant up` with vagrant-libvirt on
# the same libvirt and the Vagrant-style BIOS box, against env on it.
# Needs: libvirtd running with pool `default` (.ci/libvirtd.sh),
# openssh-server; for Vagrant: vagrant-libvirt and dnsmasq-base.
if want libvirt && virsh -q -c qemu:///system pool-info default >/dev/null 2>&1; then
  hyp=$(mktemp -d); hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ssh-keygen -q -t ed25519 -N "" -f "$hyp/host"; ssh-keygen -q -t ed25519 -N "" -f "$hyp/client"
  cp "$hyp/client.pub" "$hyp/authorized_keys"
  echo "[127.0.0.1]:$hport $(cut -d' ' -f1,2 "$hyp/host.pub")" > "$hyp/known_hosts"
  printf 'Port %s\nListenAddress 127.0.0.1\nHostKey %s/host\nAuthorizedKeysFile %s/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nPidFile %s/sshd.pid\nStrictModes no\n' \
    "$hport" "$hyp" "$hyp" "$hyp" > "$hyp/sshd_config"
  mkdir -p /run/sshd; /usr/sbin/sshd -f "$hyp/sshd_config"
  alias_name=env-bench-hypervisor-$hport
  drop_in=/etc/ssh/ssh_config.d/$alias_name.conf
  # Two names for the host: plain, and with an OpenSSH ControlMaster (what
  # docs/backends.md advises), so libvirt's SSH transport reuses one
  # connection instead of opening one per virsh call.
  host_block='Host %s\n  HostName 127.0.0.1\n  Port %s\n  IdentityFile %s/client\n  IdentitiesOnly yes\n  UserKnownHostsFile %s/known_hosts\n'
  if { printf "$host_block" "$alias_name" "$hport" "$hyp" "$hyp"
       printf "$host_block" "$alias_name-mux" "$hport" "$hyp" "$hyp"
       printf '  ControlMaster auto\n  ControlPath %s/cm-%%C\n  ControlPersist 60\n' "$hyp"; } > "$drop_in" 2>/dev/null; then
    remote_uri="qemu+ssh://root@$alias_name/system"
    mux_uri="qemu+ssh://root@$alias_name-mux/system"
  else
    drop_in=""
    remote_uri="qemu+libssh://root@127.0.0.1:$hport/system?keyfile=$hyp/client&known_hosts=$hyp/known_hosts&sshauth=privkey"
    mux_uri=""
  fi
  # One env up to SSH with this Envfile tail; prints seconds.
  lv_up() {
    local project t
    project=$(mktemp -d)
    printf '[defaults]\nbox = "%s"\ncpus = 2\nmemory = "1G"\n%s\n' "$1" "$2" > "$project/Envfile"
    cd "$project"
    t=$(now); "$ENV_BIN" up >/dev/null 2>&1 || echo "env up failed ($2)" >&2; elapsed "$t"
    "$ENV_BIN" destroy -f >/dev/null 2>&1
    cd /; rm -rf "$project"
  }
  # The box volumes are uploaded once per host: a first up outside the
  # timing, as a team's host would have them already.
  lv_up debian-12 'backend = "libvirt"' >/dev/null
  local_t=() system_t=() remote_t=() mux_t=()
  for run in $(seq "$RUNS"); do
    local_t+=("$(lv_up debian-12 '')")
    system_t+=("$(lv_up debian-12 'backend = "libvirt"')")
    remote_t+=("$(lv_up debian-12 "backend = \"libvirt\"
libvirt = { uri = \"$remote_uri\" }")")
    [ -n "$mux_uri" ] && mux_t+=("$(lv_up debian-12 "backend = \"libvirt\"
libvirt = { uri = \"$mux_uri\" }")")
    echo "libvirt run $run: local ${local_t[-1]} s, qemu:///system ${system_t[-1]} s, over ssh ${remote_t[-1]} s, with a ControlMaster ${mux_t[-1]:-} s" >&2
  done
  lt=$(printf '%s\n' "${local_t[@]}" | mean)
  st=$(printf '%s\n' "${system_t[@]}" | mean)
  rt=$(printf '%s\n' "${remote_t[@]}" | mean)
  echo "| libvirt qemu:///system, boot to SSH: env up vs env up on the local backend | ${st} s | ${lt} s | $(ratio "$st" "$lt")x |"
  echo "| libvirt over SSH (${remote_uri%%://*}:// to 127.0.0.1), boot to SSH: env up vs env up on the local backend | ${rt} s | ${lt} s | $(ratio "$rt" "$lt")x |"
  if [ -n "$mux_uri" ]; then
    mt=$(printf '%s\n' "${mux_t[@]}" | mean)
    echo "| the same with a ControlMaster for the host in the ssh config | ${mt} s | ${lt} s | $(ratio "$mt" "$lt")x |"
  fi

  # vagrant-libvirt on the same libvirt, the Vagrant-style BIOS box.
  if [ -n "$bios" ] && [ -n "$vagrant_key" ] && vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt \
      && command -v dnsmasq >/dev/null; then
    "$ENV_BIN" box list 2>/dev/null | grep -q '^vagrant-bios' || "$ENV_BIN" box add "$bios" --name vagrant-bios >/dev/null
    export VAGRANT_HOME; VAGRANT_HOME=$(mktemp -d /tmp/env-bench-vagrant.XXXXXX)
    vagrant box add --name env-bench-bios "$bios" >/dev/null
    virsh -q -c qemu:///system net-info vagrant-libvirt >/dev/null 2>&1 || true
    vag_t=() envbios_t=()
    for run in $(seq "$RUNS"); do
      vdir=$(mktemp -d)
      cat > "$vdir/Vagrantfile" <<'VAGRANTFILE'
Vagrant.configure("2") do |config|
  config.vm.box = "env-bench-bios"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.uri = "qemu:///system"
    lv.driver = "qemu"
    lv.cpus = 2
    lv.memory = 1024
    lv.storage_pool_name = "default"
  end
end
VAGRANTFILE
      cd "$vdir"
      t=$(now); vagrant up --provider=libvirt >"$vdir/up.log" 2>&1 || { echo "vagrant up failed:" >&2; tail -5 "$vdir/up.log" >&2; }
      vag_t+=("$(elapsed "$t")")
      vagrant destroy -f >/dev/null 2>&1 || true
      cd /; rm -rf "$vdir"
      envbios_t+=("$(lv_up vagrant-bios 'backend = "libvirt"')")
      echo "vagrant-libvirt run $run: vagrant up ${vag_t[-1]} s, env up ${envbios_t[-1]} s" >&2
    done
    vt=$(printf '%s\n' "${vag_t[@]}" | mean)
    et=$(printf '%s\n' "${envbios_t[@]}" | mean)
    echo "| Vagrant-style BIOS box on libvirt qemu:///system, boot to SSH: env up vs vagrant up (vagrant-libvirt) | ${et} s | ${vt} s | $(ratio "$et" "$vt")x |"
    vagrant box remove env-bench-bios --force >/dev/null 2>&1 || true
    # vagrant-libvirt leaves its copy of the box in the pool.
    for v in $(virsh -q -c qemu:///system vol-list --pool default | awk '/^ *env-bench-bios_vagrant_box_image/ { print $1 }'); do
      virsh -q -c qemu:///system vol-delete --pool default "$v" >/dev/null || true
    done
    rm -rf "$VAGRANT_HOME"
  else
    echo "(no BIOS box, Vagrant key, vagrant-libvirt or dnsmasq: the vagrant-libvirt row is skipped)" >&2
  fi
  kill "$(cat "$hyp/sshd.pid")" 2>/dev/null || true
  [ -n "$drop_in" ] && rm -f "$drop_in"
  rm -rf "$hyp"
elif want libvirt; then
  echo "(no libvirtd with pool default: the libvirt rows are skipped; sh .ci/libvirtd.sh starts one)" >&2
fi
rm -rf "$ENV_HOME" "$key"
