#!/usr/bin/env bash
# Installs the real clients and peers the end-to-end tests drive (curl,
# openssl, Python, HAProxy, nginx, iproute2, nftables and iptables for the
# transparent outbound tests, systemd-analyze, kill and setcap for the
# deployment examples, sslscan and testssl for the TLS surface audit) when
# they are missing, and make. As root with apt-get it installs them;
# otherwise it lists what is missing, and those tests skip with a message
# saying so. .ci/run calls it too: this is the one list of packages.
set -euo pipefail

need=()
command -v make    >/dev/null || need+=(make)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v curl    >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx   >/dev/null || need+=(nginx-light)
# The TLS surface audit: two scanners that attlsd's authors did not write.
command -v sslscan >/dev/null || need+=(sslscan)
command -v testssl >/dev/null || need+=(testssl.sh)
# The transparent outbound tests build network namespaces; the tools live
# in sbin, which a non-root PATH may lack.
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have ip       || need+=(iproute2)
have nft      || need+=(nftables)
have iptables || need+=(iptables)
have setpriv  || need+=(util-linux)
# The deployment examples: systemd-analyze checks the unit (installing the
# package starts nothing here), /bin/kill is its ExecReload, setcap gives a
# binary the right to bind a port below 1024.
have systemd-analyze || need+=(systemd)
[ -x /bin/kill ]     || need+=(procps)
have setcap          || need+=(libcap2-bin)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ca-certificates "${need[@]}" >/dev/null
  # Debian starts the packaged services; the tests run their own copies.
  for s in nginx haproxy; do service "$s" stop >/dev/null 2>&1 || true; done
else
  echo "missing ${need[*]}: the tests that need them will skip (apt-get install ${need[*]})" >&2
fi
