#!/usr/bin/env bash
# Times `env box add URL --checksum` of a ~500 MB box served over HTTP on
# 127.0.0.1 against the raw equivalent: `curl -o` of the same file plus
# `sha256sum` of it. Usage: bench/box.sh   (RUNS=3, SIZE_MB=500, ENV_BIN=...)
source "$(dirname "$0")/lib.sh"
SIZE_MB=${SIZE_MB:-500}
work=$(mktemp -d /var/tmp/env-bench-box.XXXXXX)
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT

# A box: a small qcow2 plus incompressible padding, so the archive is ~SIZE_MB.
mkdir -p "$work/src" "$work/www"
qemu-img create -q -f qcow2 "$work/src/box.img" 64M
printf '{"provider":"libvirt","format":"qcow2","virtual_size":1}' > "$work/src/metadata.json"
printf '{"name":"bench","version":"1.0.0"}' > "$work/src/info.json"
head -c "${SIZE_MB}M" /dev/urandom > "$work/src/padding.bin"
tar -C "$work/src" -czf "$work/www/bench.box" metadata.json info.json box.img padding.bin
sum=$(sha256sum "$work/www/bench.box" | cut -d' ' -f1)
size=$(stat -c %s "$work/www/bench.box")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.1; done
url="http://127.0.0.1:$port/bench.box"

env_times=() raw_times=()
for run in $(seq "$RUNS"); do
  export ENV_HOME="$work/home"; rm -rf "$ENV_HOME"
  sync; t=$(now)
  "$ENV_BIN" box add "$url" --checksum "sha256:$sum" >/dev/null 2>&1
  env_times+=("$(elapsed "$t")")
  rm -f "$work/raw.box"; sync; t=$(now)
  curl -s -o "$work/raw.box" "$url" && sha256sum "$work/raw.box" >/dev/null
  raw_times+=("$(elapsed "$t")")
  echo "run $run: env box add ${env_times[-1]} s, curl + sha256sum ${raw_times[-1]} s" >&2
done
envm=$(printf '%s\n' "${env_times[@]}" | mean)
rawm=$(printf '%s\n' "${raw_times[@]}" | mean)
echo "| measure (mean of $RUNS, $(( size / 1048576 )) MiB box over HTTP on 127.0.0.1) | env | raw | ratio |"
echo "|---|---|---|---|"
echo "| env box add URL --checksum vs curl -o + sha256sum | ${envm} s | ${rawm} s | $(ratio "$envm" "$rawm")x |"
