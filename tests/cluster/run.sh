#!/usr/bin/env bash
# The cluster test (`make test-cluster`, after tests/cluster/install.sh and `pip install -e ".[ray]"`):
# pytest -m cluster in a private network namespace whose only interface is loopback, so every
# server the test starts (slurmctld, slurmd, slurmdbd, MariaDB, MLflow, Ray) is reachable from
# inside it only. Needs root (unshare, the SLURM daemons). Extra arguments go to pytest.
# Loopback also gets 192.0.2.1 (a documentation address, RFC 5737): with no IPv4 address but
# 127.0.0.1, getaddrinfo(AI_ADDRCONFIG) finds none and slurmdbd cannot open its port.
#   PY=.venv/bin/python tests/cluster/run.sh [-x] [-k preemption]
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PY:-.venv/bin/python}
exec unshare --net --fork -- bash -c 'ip link set lo up && ip addr add 192.0.2.1/32 dev lo && exec "$0" -m pytest -m cluster tests/cluster "$@"' "$py" "$@"
