#!/usr/bin/env bash
# Times provisioning, folder sync and parallel up:
#  - `env provision` of a 20-step shell provisioner vs the same 20 steps as
#    plain `ssh` calls (a handshake each, as most tools do);
#  - making 1,000 small files visible in the guest through 9p, virtio-fs
#    and rsync;
#  - `env up` of 3 machines in parallel vs one after another.
# Usage: bench/provision.sh   (BOX=FILE.box, ENV_BIN=...)
source "$(dirname "$0")/lib.sh"
export ENV_ACCEL=tcg
setup_home
project=$(mktemp -d)
cd "$project"
mkdir -p files
for i in $(seq 1000); do echo "file $i" > "files/f$i.txt"; done
steps=""
for i in $(seq 20); do steps+="{ type = \"shell\", name = \"s$i\", inline = \"echo step $i >> /tmp/steps\" },"; done
cat > Envfile <<TOML
[defaults]
box = "debian-12"
[machines.bench]
provision = [ $steps ]
folders = [
  { host = "files", guest = "/srv/ninep" },
  { host = "files", guest = "/srv/rsync", type = "rsync" },
  { host = "files", guest = "/srv/vfs", type = "virtiofs" },
]
TOML
"$ENV_BIN" up --no-provision >/dev/null 2>&1

t=$(now); "$ENV_BIN" provision >/dev/null 2>&1; provision=$(elapsed "$t")
port=$("$ENV_BIN" port --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["host_port"])')
key=.envstate/machines/bench/id_ed25519
t=$(now)
for i in $(seq 20); do
  ssh -q -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes \
    -i "$key" -p "$port" vagrant@127.0.0.1 "echo step $i | sudo tee -a /tmp/steps >/dev/null"
done
plain=$(elapsed "$t")

for i in $(seq 1000); do echo "changed $i" > "files/f$i.txt"; done
t=$(now); "$ENV_BIN" ssh -- 'cat /srv/ninep/* | wc -l' >/dev/null; ninep=$(elapsed "$t")
t=$(now); "$ENV_BIN" ssh -- 'cat /srv/vfs/* | wc -l' >/dev/null; vfs=$(elapsed "$t")
t=$(now); "$ENV_BIN" rsync >/dev/null 2>&1; rsync=$(elapsed "$t")
"$ENV_BIN" destroy -f >/dev/null 2>&1

cat > Envfile <<'TOML'
[defaults]
box = "debian-12"
memory = "512M"
[machines.m1]
[machines.m2]
[machines.m3]
TOML
t=$(now); "$ENV_BIN" up --no-parallel >/dev/null 2>&1; serial=$(elapsed "$t")
"$ENV_BIN" destroy -f >/dev/null 2>&1
t=$(now); "$ENV_BIN" up >/dev/null 2>&1; parallel=$(elapsed "$t")
"$ENV_BIN" destroy -f >/dev/null 2>&1

echo "| measure | env | reference | ratio |"
echo "|---|---|---|---|"
echo "| 20 shell steps: env provision vs 20 plain ssh calls | ${provision} s | ${plain} s | $(ratio "$provision" "$plain")x |"
echo "| 1,000 changed files seen in the guest: 9p (read them all) vs rsync (env rsync) | ${ninep} s | ${rsync} s | $(ratio "$ninep" "$rsync")x |"
echo "| 1,000 changed files seen in the guest: virtio-fs (read them all) vs 9p | ${vfs} s | ${ninep} s | $(ratio "$vfs" "$ninep")x |"
echo "| up of 3 machines: parallel vs one after another | ${parallel} s | ${serial} s | $(ratio "$parallel" "$serial")x |"
cd /; rm -rf "$project" "$ENV_HOME"
