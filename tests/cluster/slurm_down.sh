#!/usr/bin/env bash
# Stop the SLURM that slurm_up.sh started in STATE_DIR: cancel its jobs, then stop the daemons
# recorded in STATE_DIR/pids ("name pid"), each with the rest of its session: SIGTERM, then
# SIGKILL to any left after 10 s.
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

# every process of each daemon's session (the daemon is its leader), all daemons at once
members() {
    local sids
    sids=$(awk '{print $2}' "$state/pids" | paste -sd' ')
    ps -e -o pid=,sid= | awk -v sids=" $sids " 'index(sids, " " $2 " ") {print $1}'
}
pids=$(members)
[[ -n $pids ]] && kill -TERM $pids 2> /dev/null
for _ in $(seq 50); do
    pids=$(members)
    [[ -z $pids ]] && break
    sleep 0.2
done
if [[ -n $pids ]]; then
    echo "slurm_down.sh: $(echo $pids | wc -w) process(es) did not stop on SIGTERM within 10 s; SIGKILL" >&2
    kill -KILL $pids 2> /dev/null
fi
rm -f "$state/pids"
