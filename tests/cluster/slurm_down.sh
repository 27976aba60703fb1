#!/usr/bin/env bash
# Stop the SLURM that slurm_up.sh started in STATE_DIR: cancel its jobs, then stop each daemon
# by the PID recorded in STATE_DIR/pids (with the rest of its session), newest first.
#   tests/cluster/slurm_down.sh STATE_DIR
set -uo pipefail

state=${1:?usage: slurm_down.sh STATE_DIR}
[[ -f $state/pids ]] || exit 0
export SLURM_CONF=$state/slurm.conf

if grep -q '^slurmctld ' "$state/pids" && scontrol ping > /dev/null 2>&1; then
    scancel --full --quiet --user=root 2> /dev/null  # this cluster's jobs only (its SLURM_CONF)
    for _ in $(seq 50); do
        [[ -z $(squeue -h -o %i 2> /dev/null) ]] && break
        sleep 0.2
    done
fi

# the session of each daemon (it is its session leader): its PID and every process it started
session_pids() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s {print $1}'; }
tac "$state/pids" | while read -r name pid; do
    pids=$(session_pids "$pid")
    [[ -n $pids ]] || continue
    kill -TERM $pids 2> /dev/null
    for _ in $(seq 50); do
        pids=$(session_pids "$pid")
        [[ -z $pids ]] && break
        sleep 0.2
    done
    if [[ -n $pids ]]; then
        echo "slurm_down.sh: $name ($pid) did not stop on SIGTERM; SIGKILL" >&2
        kill -KILL $pids 2> /dev/null
    fi
done
rm -f "$state/pids"
