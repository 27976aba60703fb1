#!/usr/bin/env bash
# A single-node SLURM with accounting, for the cluster test (tests/cluster/test_cluster.py) or to
# try `hydra/launcher=slurm` on one machine. Every file lives in STATE_DIR; nothing is installed
# system-wide and no daemon of the machine is touched.
#
#   [SLURM_CPUS=N] tests/cluster/slurm_up.sh STATE_DIR  # prints `export SLURM_CONF=...` (also in STATE_DIR/env.sh)
#   tests/cluster/slurm_down.sh STATE_DIR    # stops what this script started (by PID)
#
# Started, each in its own session (STATE_DIR/pids lists "name pid"): munged (as the munge user,
# its own key and socket), MariaDB (a unix socket, no TCP), slurmdbd (accounting: without it
# submitit cannot see a job that died without writing its result, and a sweep would wait
# forever), slurmctld and slurmd. Daemons listen on 127.0.0.1 only, on free ports.
# Needs root and Debian's slurmctld slurmd slurmdbd slurm-client munge mariadb-server
# (tests/cluster/install.sh). Requeued jobs restart after 10 s (cred_expire; SLURM's default is 120).
set -euo pipefail

state=${1:?usage: slurm_up.sh STATE_DIR}
mkdir -p "$state"
state=$(cd "$state" && pwd)
if [[ -e $state/pids ]]; then
    echo "slurm_up.sh: $state/pids exists: a cluster may already run there (slurm_down.sh $state)" >&2
    exit 1
fi
chmod 755 "$state"   # the munge user must reach its folder
mkdir -p "$state"/{log,mysql,slurmctld,slurmd}
: > "$state/pids"

host=$(hostname -s)
cpus=${SLURM_CPUS:-$(nproc)}   # more than the cores: jobs share them (the cluster test's mostly wait)
overrides=""
if (( cpus > $(nproc) )); then overrides="SlurmdParameters=config_overrides"; fi
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
free_ports() {  # N ports free on 127.0.0.1 now
    python3 -c "
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))" "$1"
}
read -r ctld_port slurmd_port dbd_port < <(free_ports 3)

# start NAME LOG CMD...: run CMD in a new session in the background; record its PID
start() {
    local name=$1 log=$2
    shift 2
    setsid "$@" >"$log" 2>&1 < /dev/null &
    echo "$name $!" >> "$state/pids"
}
# wait_for WHAT SECONDS CMD...: until CMD succeeds
wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        if "$@" > /dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "slurm_up.sh: $what did not come up within $seconds s; logs in $state/log" >&2
    tail -n 20 "$state"/log/*.log >&2 || true
    exit 1
}

# ---- munge: its own key and socket, run as the munge user (munged refuses loose permissions)
install -d -o munge -g munge -m 711 "$state/munge"
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$state/munge/munge.key"
chmod 400 "$state/munge/munge.key"
sock=$state/munge/munge.socket
start munged "$state/log/munged.out" runuser -u munge -- munged --foreground --socket="$sock" \
    --key-file="$state/munge/munge.key" --pid-file="$state/munge/munged.pid" \
    --log-file="$state/munge/munged.log" --seed-file="$state/munge/munged.seed"
wait_for munged 20 bash -c "munge -n -S '$sock' | unmunge -S '$sock'"

# ---- MariaDB for slurmdbd: unix socket only; root logs in by socket authentication
db_sock=$state/mysql.sock
mariadb-install-db --no-defaults --user=root --datadir="$state/mysql" --auth-root-authentication-method=socket \
    --skip-test-db > "$state/log/mariadb-install.log" 2>&1
start mariadb "$state/log/mariadb.log" mariadbd --no-defaults --user=root --datadir="$state/mysql" \
    --socket="$db_sock" --skip-networking --pid-file="$state/mariadb.pid" --innodb-buffer-pool-size=32M
wait_for MariaDB 60 mariadb --no-defaults -S "$db_sock" -u root -e "SELECT 1"

# ---- slurmdbd and slurmctld/slurmd
auth="AuthType=auth/munge
AuthInfo=socket=$sock,cred_expire=10"
cat > "$state/slurmdbd.conf" <<EOF
$auth
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$state/slurmdbd.pid
LogFile=$state/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
chmod 600 "$state/slurmdbd.conf"
cat > "$state/slurm.conf" <<EOF
ClusterName=macpo
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
$auth
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/slurmctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=10
MinJobAge=600
SchedulerParameters=sched_interval=5
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$host
AccountingStoragePort=$dbd_port
AccountingStoragePass=$sock
$overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$state/slurm.conf
echo "export SLURM_CONF=$SLURM_CONF" > "$state/env.sh"

# slurmdbd reads slurmdbd.conf beside $SLURM_CONF; MariaDB's client library takes the socket from MYSQL_UNIX_PORT
start slurmdbd "$state/log/slurmdbd.out" env MYSQL_UNIX_PORT="$db_sock" slurmdbd -D
wait_for slurmdbd 60 bash -c "echo > /dev/tcp/127.0.0.1/$dbd_port"
start slurmctld "$state/log/slurmctld.out" slurmctld -D -f "$SLURM_CONF"
wait_for slurmctld 60 scontrol ping
start slurmd "$state/log/slurmd.out" slurmd -D -f "$SLURM_CONF"
wait_for "node $host (idle)" 60 bash -c "sinfo -h -N -o %T | grep -qx idle"
wait_for "accounting (sacct)" 60 sacct -X -n
echo "export SLURM_CONF=$SLURM_CONF"
