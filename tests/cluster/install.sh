#!/usr/bin/env bash
# What the cluster test needs from the system, installed with apt-get when missing (Debian 12 or
# similar; root, or sudo): SLURM (slurmctld, slurmd, slurmdbd, the clients), MUNGE, MariaDB,
# iproute2 (ip) and util-linux (unshare). apt-get is kept from starting their system services
# (the test starts its own, in its own folder): a policy-rc.d that refuses, for the install only.
set -euo pipefail

need=()
for pair in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client munged:munge \
    mariadbd:mariadb-server ip:iproute2 unshare:util-linux runuser:util-linux; do
    program=${pair%%:*}
    command -v "$program" > /dev/null || [[ -x /usr/sbin/$program ]] || need+=("${pair#*:}")
done
((${#need[@]})) || exit 0

sudo=""
[[ $EUID -eq 0 ]] || sudo=sudo
echo "tests/cluster/install.sh: apt-get install ${need[*]}"
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" > /dev/null
    $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
