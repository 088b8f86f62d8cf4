#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine to the running example environment:
# host packages, the env binary, the debian-12 box, `env up` of Envfile.example.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "==> host packages"
scripts/install-host-deps.sh
echo "==> building env"
cargo build --release --locked
env=$PWD/target/release/env
if ! "$env" box list | grep -q '^debian-12 '; then
  echo "==> building the debian-12 box (about 2 minutes)"
  out=$(mktemp -d)/debian-12.box
  # Without root where the user has a subordinate id range (mmdebstrap's
  # unshare mode); through sudo otherwise.
  if [ "$(id -u)" != 0 ] && grep -qs "^$(id -un):" /etc/subuid; then
    boxes/debian-12/build "$out"
  else
    as_root boxes/debian-12/build "$out"
  fi
  "$env" box add "$out" --name debian-12
  as_root rm -f "$out"
fi
echo "==> env up (Envfile.example)"
"$env" --envfile Envfile.example up
"$env" --envfile Envfile.example status
echo "Log in with: $env --envfile Envfile.example ssh web"
