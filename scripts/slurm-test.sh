#!/usr/bin/env bash
# slurm-test: checks cmd/sweep's Slurm path on a real, single-node Slurm
# cluster started on this machine (loopback only): installs Debian's
# slurm-wlm and munge when missing, writes a private slurm.conf and munge
# key, starts munged, slurmctld and slurmd, submits a small demo sweep
# (2 methods x synthetic x 2 shots x 1 seed, tiny random CLIP, CPU), waits
# for the job array, checks that every cell wrote result.json, and stops
# the daemons it started. Needs root (apt-get, daemons). Not part of
# `make test`; run it with `make slurm-test`.
#
# Environment: SLURM_TEST_DIR (default runs/slurm-test, emptied first),
# SLURM_TEST_TIMEOUT (seconds to wait for the jobs, default 600).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${SLURM_TEST_DIR:-$ROOT/runs/slurm-test}
TIMEOUT=${SLURM_TEST_TIMEOUT:-600}
STATE=$WORK/slurm
say() { printf 'slurm-test: %s\n' "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get and the Slurm daemons); run as root"

# 1. Packages.
missing=()
for c in slurmctld slurmd sbatch squeue sinfo; do command -v "$c" >/dev/null || missing+=("$c"); done
command -v munged >/dev/null || missing+=(munged)
if [ ${#missing[@]} -gt 0 ]; then
	say "installing slurm-wlm and munge (missing: ${missing[*]})"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
say "$(dpkg-query -W -f='slurm ${Version}' slurmctld 2>/dev/null || echo slurm), $(dpkg-query -W -f='munge ${Version}' munge 2>/dev/null || echo munge)"

# 2. Configuration, all under $STATE (the system's /etc/slurm is not used).
rm -rf "$WORK"
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/munge"
HOST=$(hostname -s)
export SLURM_CONF=$STATE/slurm.conf
# The node's real CPUs and memory, as slurmd sees them.
NODE=$(slurmd -C | head -1 | sed 's/ UpTime=.*//')
case "$NODE" in NodeName=*) ;; *) die "slurmd -C printed '$NODE'" ;; esac
cat >"$SLURM_CONF" <<EOF
# Single-node test cluster on the loopback interface (scripts/slurm-test.sh).
ClusterName=clipgo-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldTimeout=30
SlurmdTimeout=30
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# 3. Daemons (stopped on exit, whatever happens).
pids=()
cleanup() {
	for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
		if [ -s "$f" ]; then
			kill "$(cat "$f")" 2>/dev/null || true
		fi
	done
	sleep 1
	say "daemons stopped"
}
trap cleanup EXIT
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 0700 "$STATE/munge"
chmod 0400 "$STATE/munge/munge.key"
munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
	--pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
munge --socket="$STATE/munge/munge.socket" -n | unmunge --socket="$STATE/munge/munge.socket" >/dev/null ||
	die "munge does not work (see $STATE/munge/munged.log)"
slurmctld -c || die "slurmctld did not start (see $STATE/slurmctld.log)"
slurmd -N "$HOST" || die "slurmd did not start (see $STATE/slurmd.log)"
for i in $(seq 60); do
	state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
	[ "$state" = idle ] && break
	sleep 1
done
[ "$state" = idle ] || die "node $HOST is '$state', not idle (see $STATE/*.log)"
say "cluster up: node $HOST idle ($NODE)"

# 4. The sweep: build, write the job array, submit.
export PATH=$PATH:/usr/local/go/bin
go build -o "$WORK/bin/sweep" ./cmd/sweep
"$WORK/bin/sweep" -config configs/sweeps/demo.toml -out "$WORK/sweep" -set "data.root=$WORK/data" \
	-methods coop,clip-adapter -shots 1,2 -seeds 1 -slurm
job=$(sbatch --parsable "$WORK/sweep/sweep.sbatch")
job=${job%%;*}
cells=$(($(wc -l <"$WORK/sweep/manifest.tsv") - 1))
say "submitted job array $job ($cells cells)"

# 5. Wait.
start=$(date +%s)
while :; do
	left=$(squeue -h -j "$job" -o %i 2>/dev/null | wc -l)
	[ "$left" -eq 0 ] && break
	if [ $(($(date +%s) - start)) -ge "$TIMEOUT" ]; then
		squeue -j "$job" || true
		scancel "$job" || true
		die "job array $job still has $left tasks after ${TIMEOUT}s"
	fi
	sleep 2
done
say "job array finished in $(($(date +%s) - start))s"

# 6. Check every cell's result.
fail=0
while IFS=$'\t' read -r index dir _; do
	[ "$index" = index ] && continue
	if [ -s "$dir/result.json" ]; then
		say "cell $index: $(basename "$dir"): $(grep -o '"top1": [0-9.]*' "$dir/result.json" | head -1)"
	else
		fail=1
		say "cell $index: no result.json in $dir; its log:"
		cat "$WORK/sweep/logs/${job}_${index}.out" 2>/dev/null | tail -20 || true
	fi
done <"$WORK/sweep/manifest.tsv"
[ "$fail" = 0 ] || die "some cells have no result"
go run ./cmd/report -runs "$WORK/sweep" >/dev/null
say "OK: $cells cells ran as Slurm array tasks; report in $WORK/sweep/report"
