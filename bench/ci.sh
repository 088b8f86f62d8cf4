#!/usr/bin/env bash
# The provisioning cache and the matrix in CI terms: `env test --idempotent`
# of a provisioning-heavy project cold (empty cache), then unchanged with
# the cache (a hit), and without the cache for the cost of keeping; then
# examples/matrix whole with --parallel 1 and 2. TCG.
# Usage: bench/ci.sh   (RUNS=1 by default here: a cold run takes minutes)
RUNS=${RUNS:-1}
source "$(dirname "$0")/lib.sh"
export ENV_ACCEL=tcg
setup_home

# examples/web plus a step that takes minutes, as real recipes do. No
# package repository is reachable here, so the step does offline what
# installing packages spends its time on: unpacking an archive (a copy of
# Python's standard library, packed and unpacked) and byte-compiling it at
# the three optimization levels, as Debian's python3 packages do.
project=$(mktemp -d)
cp -R "$repo/examples/web/." "$project/"
cat > "$project/provision/build.sh" <<'SH'
#!/bin/sh
set -eu
if [ -f /opt/pylib/.built ]; then echo "already built"; exit 0; fi
rm -rf /opt/pylib /opt/pylib.tar.gz
tar -C /usr/lib -czf /opt/pylib.tar.gz python3.11
mkdir -p /opt/pylib && tar -C /opt/pylib -xzf /opt/pylib.tar.gz
for level in 0 1 2; do python3 -m compileall -q -j 0 -o "$level" /opt/pylib >/dev/null; done
touch /opt/pylib/.built
exit 100
SH
python3 - "$project/Envfile" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace('provision = [\n', 'provision = [\n  { type = "shell", name = "build", path = "provision/build.sh", changed_exit_code = 100 },\n', 1)
open(path, "w").write(text)
PY
cd "$project"

cold=() hit=() plain=()
for run in $(seq "$RUNS"); do
  "$ENV_BIN" cache prune --all >/dev/null 2>&1
  t=$(now); "$ENV_BIN" test --idempotent --cache >/dev/null 2>&1; cold+=("$(elapsed "$t")")
  t=$(now); "$ENV_BIN" test --idempotent --cache >/dev/null 2>&1; hit+=("$(elapsed "$t")")
  t=$(now); "$ENV_BIN" test --idempotent --no-cache >/dev/null 2>&1; plain+=("$(elapsed "$t")")
  echo "run $run: cold ${cold[-1]} s, hit ${hit[-1]} s, no cache ${plain[-1]} s" >&2
done
cold_mean=$(printf '%s\n' "${cold[@]}" | mean)
hit_mean=$(printf '%s\n' "${hit[@]}" | mean)
plain_mean=$(printf '%s\n' "${plain[@]}" | mean)
size=$("$ENV_BIN" cache list --json | python3 -c 'import json,sys; print(sum(e["bytes"] for e in json.load(sys.stdin)["entries"]) >> 20)')
cd /; rm -rf "$project"

# The matrix: two platforms x two suites, one and two at a time
# (MATRIX=0 skips it).
bios=$(bios_box)
matrix=() parallel_note=""
if [ "${MATRIX:-1}" = 0 ]; then
  parallel_note="(MATRIX=0)"
elif [ -n "$bios" ]; then
  "$ENV_BIN" box add "$bios" --name debian-12-bios >/dev/null
  project=$(mktemp -d); cp -R "$repo/examples/matrix/." "$project/"; cd "$project"
  for n in 1 2; do
    t=$(now); "$ENV_BIN" test --parallel "$n" >/dev/null 2>&1; matrix+=("$(elapsed "$t")")
    echo "matrix --parallel $n: ${matrix[-1]} s" >&2
  done
  cd /; rm -rf "$project"
else
  parallel_note="(no debian-12-bios box: run the tests once, or set BIOS_BOX)"
fi

echo "| measure (mean of $RUNS) | time | against | ratio |"
echo "|---|---|---|---|"
echo "| env test --idempotent --cache, cold (keeps the entry, ${size} MiB) | ${cold_mean} s | | |"
echo "| env test --idempotent --cache, unchanged (a hit) | ${hit_mean} s | cold ${cold_mean} s | $(ratio "$cold_mean" "$hit_mean")x faster |"
echo "| env test --idempotent --no-cache | ${plain_mean} s | cold with --cache ${cold_mean} s | keeping costs $(echo "$cold_mean - $plain_mean" | bc) s |"
if [ ${#matrix[@]} -eq 2 ]; then
  echo "| examples/matrix (4 combinations), env test --parallel 1 | ${matrix[0]} s | | |"
  echo "| examples/matrix, env test --parallel 2 | ${matrix[1]} s | --parallel 1 | $(ratio "${matrix[0]}" "${matrix[1]}")x faster |"
else
  echo "| examples/matrix | not run $parallel_note | | |"
fi
rm -rf "$ENV_HOME"
