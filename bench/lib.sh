# Shared helpers of the bench scripts (sourced).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_BIN=${ENV_BIN:-$repo/target/release/env}
RUNS=${RUNS:-3}

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
# mean of the numbers on stdin
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.3f", s / n }'; }
ratio() { echo "scale=2; $1 / $2" | bc; }

# A box file for the benchmarks: $BOX, else the tests' cached build.
bench_box() {
  if [ -n "${BOX:-}" ]; then echo "$BOX"; return; fi
  # debian-12-HASH.box only: the variants' names have a word before the hash.
  ls -t /var/tmp/env-test-box/debian-12-*.box 2>/dev/null | grep -E '/debian-12-[0-9a-f]+\.box$' | head -n1
}

# The Vagrant-style BIOS box (boxes/debian-12-bios): $BIOS_BOX, else the
# tests' cached build; empty when there is none.
bios_box() {
  if [ -n "${BIOS_BOX:-}" ]; then echo "$BIOS_BOX"; return; fi
  ls -t /var/tmp/env-test-box/debian-12-bios-*.box 2>/dev/null | head -n1 || true
}

# The cloud-image-shaped qcow2 (boxes/debian-12-cloud): $CLOUD_IMAGE, else
# the tests' cached build; empty when there is none.
cloud_image() {
  if [ -n "${CLOUD_IMAGE:-}" ]; then echo "$CLOUD_IMAGE"; return; fi
  ls -t /var/tmp/env-test-box/debian-12-cloud-*.box 2>/dev/null | head -n1 || true
}

# A fresh ENV_HOME holding the box as debian-12.
setup_home() {
  local box; box=$(bench_box)
  [ -n "$box" ] || { echo "no box: set BOX=FILE.box or run the tests once" >&2; exit 1; }
  export ENV_HOME; ENV_HOME=$(mktemp -d /tmp/env-bench-home.XXXXXX)
  "$ENV_BIN" box add "$box" --name debian-12 >/dev/null
}

# Polls `ssh true` with the well-known key until it succeeds.
wait_ssh_true() {
  local port=$1 key=$2
  until ssh -q -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=2 -o IdentitiesOnly=yes -i "$key" -p "$port" vagrant@127.0.0.1 true 2>/dev/null; do
    sleep 0.1
  done
}
