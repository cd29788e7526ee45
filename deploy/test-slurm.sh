#!/usr/bin/env bash
# Runs the Slurm templates on a real single-node Slurm on this machine (Debian's slurm-wlm, installed
# when missing: needs root or sudo), against the built binary, and checks what a person would:
#   1. submit.sh with its defaults fits the node (here: all its CPUs, its memory) and runs: the array
#      and the merge finish, the merged run equals a single-process run row for row, and carries the
#      same verdict (merge.sbatch ends with the shortcut check);
#   2. a request no node can hold (-c beyond the node's CPUs, -m beyond its memory) is refused by
#      submit.sh (exit 2) instead of pending forever, and nothing is queued;
#   3. a failed task resubmitted alone the natural way (sbatch --array=1) lands in shard 1 of 3, and the
#      merge then completes the run;
#   4. an array the template cannot map to shards (--array=1-3 for 3 shards) fails every task with
#      exit code 2 and "resubmitting cannot help".
# The controller and node daemons run from a private slurm.conf in a temporary folder (loopback only,
# auth/none), started here and stopped at the end; nothing of the machine's Slurm set-up is changed.
# Usage: bash deploy/test-slurm.sh (after `make build data`); .ci/run runs it after `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
BIN=${TUMOR_AUDIT:-$repo/target/release/tumor-audit}
[ -x "$BIN" ] || { echo "test-slurm: no $BIN (make build first)" >&2; exit 1; }
t_start=$(date +%s)

if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v sbatch > /dev/null; then
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    elif command -v sudo > /dev/null; then
        sudo=(sudo)
    else
        echo "test-slurm: Slurm is not installed, and neither root nor sudo can install it" >&2
        exit 1
    fi
    echo "installing Debian's slurm-wlm"
    "${sudo[@]}" apt-get update -q > /dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm > /dev/null
fi
[ "$(id -u)" = 0 ] || { echo "test-slurm: the Slurm daemons need root (run as root)" >&2; exit 1; }

work=$(mktemp -d -t tumor-audit-slurm.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2> /dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2> /dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
fail() {
    echo "test-slurm: FAILED: $*" >&2
    for f in "$work"/slurm/*.log "$work"/run/*.log; do
        [ -e "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

# The node as Slurm will know it: this machine's CPUs and 90% of its memory.
node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
mkdir -p "$work/slurm/state" "$work/slurm/spool" "$work/run"
export SLURM_CONF="$work/slurm/slurm.conf"
cat > "$SLURM_CONF" << EOF
ClusterName=tumor-audit-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/slurm/state
SlurmdSpoolDir=$work/slurm/spool
SlurmctldPidFile=$work/slurm/slurmctld.pid
SlurmdPidFile=$work/slurm/slurmd.pid
SlurmctldLogFile=$work/slurm/slurmctld.log
SlurmdLogFile=$work/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i > "$work/slurm/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D > "$work/slurm/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
    state=$(sinfo -h -o '%T' 2> /dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || fail "the node is not idle after 60 s (state '$state')"
echo "Slurm $(sinfo -V | awk '{ print $2 }'): node $node, $cpus CPUs, ${mem_mb} MB, up in $(($(date +%s) - t_start)) s"

# A small real test set (3 Br35H test images per class), cheap methods; the job folder holds config.yml
# and models/ as submit.sh expects.
jobs_dir="$work/run"
ln -s "$repo/config.yml" "$jobs_dir/config.yml"
ln -s "$repo/models" "$jobs_dir/models"
for class in no yes; do
    mkdir -p "$work/data/Testing/$class"
    # The whole listing is read (no `head` in the pipe): under pipefail, a reader that stops early
    # makes the writer die of SIGPIPE and the script exit 141 at random.
    mapfile -t files < <(find "$repo/data/br35h/Testing/$class" -maxdepth 1 -type f | sort)
    [ "${#files[@]}" -ge 3 ] || fail "fewer than 3 test images in data/br35h/Testing/$class"
    cp "${files[@]:0:3}" "$work/data/Testing/$class/"
done
audit_args="--data $work/data/Testing --methods gradcam,guided_backprop --no-leakage-check"
export TUMOR_AUDIT=$BIN AUDIT_ARGS=$audit_args
cd "$jobs_dir"

# Waits until every job of this test has left the queue.
wait_jobs() {
    local _
    for _ in $(seq "${1:-300}"); do
        [ -z "$(squeue -h -o %i)" ] && return 0
        sleep 1
    done
    squeue >&2
    fail "jobs still queued after ${1:-300} s"
}
exit_code() { # job id -> "N:M" while the controller remembers the job
    scontrol show job "$1" | tr ' ' '\n' | awk -F= '$1 == "ExitCode" && !done { print $2; done = 1 }'
}
compare_py=$(
    cat << 'PY'
import sqlite3, sys
a, b, run = sys.argv[1], sys.argv[2], sys.argv[3]
tables = {"run_images": ["seconds"], "predictions": [], "attribution_metrics": ["seconds"], "agreement": [],
          "maps": [], "errors": ["id", "at"], "shortcut_checks": ["created_at", "seconds", "acquisition_seconds"],
          "shortcut_methods": [], "shortcut_regions": [], "shortcut_flags": [], "shortcut_tests": [],
          "acquisition_properties": [], "acquisition_tests": []}
def rows(db, table, skip):
    c = sqlite3.connect(db)
    cols = [r[1] for r in c.execute(f"PRAGMA table_info({table})") if r[1] not in skip]
    return sorted(repr(r) for r in c.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE run_id = ?", (run,)))
bad = [t for t, skip in tables.items() if rows(a, t, skip) != rows(b, t, skip)]
n = {t: len(rows(a, t, s)) for t, s in tables.items()}
if bad or n["shortcut_checks"] != 1:
    sys.exit(f"differ: {bad}; rows {n}")
print(f"row for row equal ({n['predictions']} predictions, {n['maps']} maps, verdict included)")
PY
)

# 0. The controller accepts both scripts as submit.sh submits them.
RUN=check SHARDS=3 sbatch --test-only --array=0-2 --cpus-per-task="$cpus" "$repo/deploy/slurm/audit-shard.sbatch" \
    > "$work/run/test-only.log" 2>&1 || fail "sbatch --test-only audit-shard.sbatch: $(cat "$work/run/test-only.log")"
RUN=check SHARDS=3 sbatch --test-only --cpus-per-task="$cpus" "$repo/deploy/slurm/merge.sbatch" \
    > "$work/run/test-only.log" 2>&1 || fail "sbatch --test-only merge.sbatch: $(cat "$work/run/test-only.log")"
echo "0. sbatch --test-only: both scripts accepted"

# 1. The defaults fit the node; the merged run equals a single-process run, verdict included.
t0=$(date +%s)
read -r -a audit_words <<< "$audit_args"
"$BIN" --threads "$cpus" audit --run r --db "$work/single.sqlite" "${audit_words[@]}" > "$work/run/single.log" 2>&1 \
    || [ $? -eq 3 ] || fail "the single-process audit"
echo "single-process audit: $(($(date +%s) - t0)) s"
t0=$(date +%s)
OUT="$work/out" bash "$repo/deploy/slurm/submit.sh" 3 r > "$work/run/submit.log" 2>&1 || fail "submit.sh 3 r: $(cat "$work/run/submit.log")"
cat "$work/run/submit.log"
grep -q -- "--cpus-per-task=$cpus " "$work/run/submit.log" || fail "submit.sh's default is not the node's $cpus CPUs"
merge_job=$(sed -n 's/.*merge job \([0-9]*\).*/\1/p' "$work/run/submit.log")
wait_jobs 600
[ "$(exit_code "$merge_job")" = 0:0 ] || fail "the merge job ended with $(exit_code "$merge_job")"
python3 -c "$compare_py" "$work/single.sqlite" "$work/out/audit.sqlite" r || fail "the merged run differs"
grep -q "^verdict: " tumor-audit-merge-"$merge_job".log || fail "no verdict in the merge job's log"
echo "1. submit.sh 3 with the defaults: array + merge in $(($(date +%s) - t0)) s; $(grep '^verdict: ' tumor-audit-merge-"$merge_job".log)"

# 2. Requests no node holds are refused, nothing is queued.
for opt in "-c $((cpus + 1))" "-m $((mem_mb + 1024))M"; do
    status=0
    # shellcheck disable=SC2086 # "-c N": option and value
    OUT="$work/out2" bash "$repo/deploy/slurm/submit.sh" $opt 3 r2 > "$work/run/refused.log" 2>&1 || status=$?
    [ "$status" = 2 ] || fail "submit.sh $opt exited $status: $(cat "$work/run/refused.log")"
    grep -q "pend forever" "$work/run/refused.log" || fail "submit.sh $opt: $(cat "$work/run/refused.log")"
    [ -z "$(squeue -h -o %i)" ] || fail "submit.sh $opt queued a job"
done
echo "2. submit.sh -c $((cpus + 1)) and -m $((mem_mb + 1024))M: refused (exit 2), nothing queued"

# 3. Task 1 fails (its database is gone); resubmitted alone it lands in shard 1 of 3.
rm "$work/out/audit.shard-1-of-3.sqlite" "$work/out/audit.sqlite"
status=0
RUN=r SHARDS=3 OUT="$work/out" sbatch --parsable --wait --cpus-per-task="$cpus" --export=ALL \
    "$repo/deploy/slurm/merge.sbatch" > /dev/null 2>&1 || status=$?
[ "$status" = 5 ] || fail "the merge without shard 1 exited $status, not 5"
job=$(RUN=r SHARDS=3 OUT="$work/out" sbatch --parsable --array=1 --cpus-per-task="$cpus" --export=ALL \
    "$repo/deploy/slurm/audit-shard.sbatch")
job=${job%%;*}
wait_jobs 300
[ -f "$work/out/audit.shard-1-of-3.sqlite" ] || fail "task 1 resubmitted alone wrote no shard 1 of 3"
[ ! -e "$work/out/audit.shard-0-of-1.sqlite" ] || fail "task 1 resubmitted alone became shard 0 of 1"
grep -q "shard 1 of 3" tumor-audit-shard-"${job}"_1.log || fail "task 1's log: $(cat tumor-audit-shard-"${job}"_1.log)"
RUN=r SHARDS=3 OUT="$work/out" sbatch --wait --cpus-per-task="$cpus" --export=ALL \
    "$repo/deploy/slurm/merge.sbatch" > /dev/null || fail "the merge after the resubmitted task"
python3 -c "$compare_py" "$work/single.sqlite" "$work/out/audit.sqlite" r || fail "the merged run differs after the resubmission"
echo "3. sbatch --array=1 alone: shard 1 of 3; merged again: complete"

# 4. An array whose ids are not the shard indices: every task exits 2, saying resubmitting cannot help.
job=$(RUN=r4 SHARDS=3 OUT="$work/out4" sbatch --parsable --array=1-3 --export=ALL "$repo/deploy/slurm/audit-shard.sbatch")
job=${job%%;*}
wait_jobs 120
for k in 1 2 3; do
    code=$(exit_code "${job}_$k")
    [ "$code" = 2:0 ] || fail "task $k of --array=1-3 ended with $code, not 2:0"
    grep -q "resubmitting cannot help" tumor-audit-shard-"${job}_$k".log || fail "task $k's log"
done
[ ! -e "$work/out4" ] || [ -z "$(ls -A "$work/out4")" ] || fail "a refused task wrote something"
echo "4. --array=1-3 for 3 shards: every task exit 2 ('resubmitting cannot help')"

echo "all checks passed in $(($(date +%s) - t_start)) s"
echo "test-slurm: 5 passed, 0 failed"
