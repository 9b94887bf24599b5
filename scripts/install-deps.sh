#!/usr/bin/env bash
# Installs what weft's demo, tests and benchmark need on a Debian machine, and only what is missing.
# Needs root (apt-get). Go itself (1.26, /usr/local/go) must already be there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip           || need+=(iproute2)
have nft          || need+=(nftables)
have ping         || need+=(iputils-ping)
have nc           || need+=(netcat-openbsd)
have socat        || need+=(socat)
have iperf3       || need+=(iperf3)
have redis-server || need+=(redis-server)
have redis-cli    || need+=(redis-tools)
have ethtool      || need+=(ethtool)
have curl         || need+=(curl)
have ss           || need+=(iproute2)
have sysctl       || need+=(procps)
have pkill        || need+=(procps)
have conntrack    || need+=(conntrack)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# redis-server's Debian package starts a system instance on 127.0.0.1:6379; weft's tests and demo run
# their own instances inside network namespaces and do not need it.

if ! have go && [ -x /usr/local/go/bin/go ]; then export PATH=/usr/local/go/bin:$PATH; fi
if ! have go; then
  echo "Go 1.26 is required: install it in /usr/local/go (https://go.dev/doc/install)" >&2
  exit 1
fi
go mod download
