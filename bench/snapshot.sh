#!/usr/bin/env bash
# Times a snapshot restore of a running 1 GiB machine against rebuilding it
# (`env destroy -f && env up`), and the raw QEMU equivalent of the restore
# (HMP loadvm over QMP, no clock fix). Also the save, and the first
# `env ssh -- true` after each (a restore drops the SSH master connection).
# Then `env suspend` + `env resume` (to the first `env ssh -- true`) against
# `env halt` + `env up` of the same machine.
# TCG, 2 vCPUs. Usage: bench/snapshot.sh   (RUNS=3, BOX=FILE.box, ENV_BIN=...)
source "$(dirname "$0")/lib.sh"
export ENV_ACCEL=tcg
setup_home
project=$(mktemp -d)
printf '[defaults]\nbox = "debian-12"\ncpus = 2\nmemory = "1G"\n' > "$project/Envfile"
cd "$project"
"$ENV_BIN" up >/dev/null 2>&1
# Some state worth snapshotting: packages' files read, a page cache warmed.
"$ENV_BIN" ssh -- 'cat /usr/bin/* >/dev/null 2>&1; true'

qmp() { # qmp SOCKET JSON-COMMAND: one command, its answer on stdout
  python3 - "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def answer():
    while True:
        m = json.loads(f.readline())
        if "event" not in m: return m
answer(); f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); answer()
f.write(sys.argv[2] + "\n"); f.flush(); print(answer())
PY
}
socket=$(find "${XDG_RUNTIME_DIR:-/tmp}" -maxdepth 2 -name '*.qmp' -newer "$project/Envfile" 2>/dev/null | head -n1)

save_times=() restore_times=() restore_ssh_times=() raw_times=() rebuild_times=() rebuild_ssh_times=()
t=$(now); "$ENV_BIN" snapshot save base >/dev/null 2>&1; save_times+=("$(elapsed "$t")")
"$ENV_BIN" snapshot delete base >/dev/null 2>&1
for run in $(seq "$RUNS"); do
  t=$(now); "$ENV_BIN" snapshot save "s$run" >/dev/null 2>&1; save_times+=("$(elapsed "$t")")
  "$ENV_BIN" ssh -- 'sudo touch /etc/dirty'
  t=$(now); "$ENV_BIN" snapshot restore "s$run" >/dev/null 2>&1; restore_times+=("$(elapsed "$t")")
  "$ENV_BIN" ssh -- true; restore_ssh_times+=("$(elapsed "$t")")
  if [ -n "$socket" ]; then
    t=$(now); qmp "$socket" "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"loadvm s$run\"}}" >/dev/null
    raw_times+=("$(elapsed "$t")")
  fi
  echo "run $run: save ${save_times[-1]} s, restore ${restore_times[-1]} s (+ssh ${restore_ssh_times[-1]} s)" >&2
done
suspend_times=() resume_times=() halt_up_times=()
for run in $(seq "$RUNS"); do
  t=$(now); "$ENV_BIN" suspend >/dev/null 2>&1; suspend_times+=("$(elapsed "$t")")
  t=$(now); "$ENV_BIN" resume >/dev/null 2>&1 && "$ENV_BIN" ssh -- true; resume_times+=("$(elapsed "$t")")
  t=$(now); "$ENV_BIN" halt >/dev/null 2>&1 && "$ENV_BIN" up >/dev/null 2>&1 && "$ENV_BIN" ssh -- true
  halt_up_times+=("$(elapsed "$t")")
  echo "run $run: suspend ${suspend_times[-1]} s, resume ${resume_times[-1]} s, halt && up ${halt_up_times[-1]} s" >&2
done
"$ENV_BIN" destroy -f >/dev/null 2>&1
for run in $(seq "$RUNS"); do
  "$ENV_BIN" up >/dev/null 2>&1
  t=$(now); "$ENV_BIN" destroy -f >/dev/null 2>&1 && "$ENV_BIN" up >/dev/null 2>&1; rebuild_times+=("$(elapsed "$t")")
  "$ENV_BIN" ssh -- true; rebuild_ssh_times+=("$(elapsed "$t")")
  echo "run $run: destroy && up ${rebuild_times[-1]} s" >&2
done
"$ENV_BIN" destroy -f >/dev/null 2>&1

restore=$(printf '%s\n' "${restore_times[@]}" | mean)
restore_ssh=$(printf '%s\n' "${restore_ssh_times[@]}" | mean)
rebuild=$(printf '%s\n' "${rebuild_times[@]}" | mean)
rebuild_ssh=$(printf '%s\n' "${rebuild_ssh_times[@]}" | mean)
echo "| measure (mean of $RUNS) | env | reference | speed-up |"
echo "|---|---|---|---|"
echo "| restore vs destroy -f && up | ${restore} s | ${rebuild} s | $(ratio "$rebuild" "$restore")x |"
echo "| ... then the first env ssh -- true | ${restore_ssh} s | ${rebuild_ssh} s | $(ratio "$rebuild_ssh" "$restore_ssh")x |"
if [ ${#raw_times[@]} -gt 0 ]; then
  raw=$(printf '%s\n' "${raw_times[@]}" | mean)
  echo "| restore vs raw QMP loadvm (no clock fix) | ${restore} s | ${raw} s | ratio $(ratio "$restore" "$raw")x |"
fi
echo "| snapshot save (1 GiB machine) | $(printf '%s\n' "${save_times[@]}" | mean) s | | |"
suspend=$(printf '%s\n' "${suspend_times[@]}" | mean)
resume=$(printf '%s\n' "${resume_times[@]}" | mean)
halt_up=$(printf '%s\n' "${halt_up_times[@]}" | mean)
both=$(echo "$suspend + $resume" | bc -l | awk '{printf "%.2f", $1}')
echo "| suspend + resume (to SSH) vs halt && up (to SSH) | ${both} s | ${halt_up} s | $(ratio "$halt_up" "$both")x |"
echo "| ... suspend / resume alone | ${suspend} s / ${resume} s | | |"
cd /; rm -rf "$project" "$ENV_HOME"
