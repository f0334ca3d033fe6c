#!/usr/bin/env bash
# The side-by-side benchmark: attlsd, stunnel, HAProxy and hitch, each in
# front of the same cleartext backend with the same ECDSA P-256
# certificate and comparable settings (TLS 1.2 and 1.3, AES-128-GCM,
# X25519, a PROXY header to the backend), measured by the same client in
# one run on loopback. It prints one table, proxy by figure, with each
# attlsd figure as a ratio to the best peer; it judges nothing.
#
# As root it installs the peers from Debian when they are missing;
# otherwise a missing peer is left out of the table. Knobs, from the
# environment: BENCH_PORT (first of six ports, default 24400), BENCH_MIB
# (MiB per throughput connection, default 256), BENCH_CONNS (parallel
# throughput connections, default 4), BENCH_SECONDS (per handshake
# figure, default 8), BENCH_IDLE (idle connections, default 5000),
# BENCH_OUT (where the table is written too, default bin/bench.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."

port=${BENCH_PORT:-24400}
mib=${BENCH_MIB:-256}
conns=${BENCH_CONNS:-4}
seconds=${BENCH_SECONDS:-8}
idle=${BENCH_IDLE:-5000}
out=${BENCH_OUT:-bin/bench.txt}
GO=${GO:-go}

# --- set-up ---------------------------------------------------------------

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	need=()
	command -v stunnel4 >/dev/null || need+=(stunnel4)
	command -v haproxy >/dev/null || need+=(haproxy)
	command -v hitch >/dev/null || [ -x /usr/sbin/hitch ] || need+=(hitch)
	if [ ${#need[@]} -gt 0 ]; then
		echo "installing ${need[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	for s in haproxy hitch stunnel4; do service "$s" stop >/dev/null 2>&1 || true; done
fi
export PATH="$PATH:/usr/sbin:/sbin"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fds=$(ulimit -n)
if [ "$fds" -lt $((2 * idle + 200)) ]; then
	idle=$(((fds - 200) / 2))
	echo "descriptor limit $fds: measuring idle memory at $idle connections"
fi

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

$GO build -trimpath -o "$work/attlsd" ./cmd/attlsd
$GO build -trimpath -o "$work/loadgen" ./test/bench/loadgen
"$work/attlsd" certs init "$work/certs" >/dev/null
chmod 0644 "$work"/certs/*.pem # hitch and HAProxy read them after dropping root
cat "$work/certs/server.pem" "$work/certs/server-key.pem" >"$work/certs/combined.pem"
chmod -R a+rX "$work"

backend=127.0.0.1:$port
"$work/loadgen" backend -listen "$backend" >/dev/null &
pids+=($!)

# --- the proxies ----------------------------------------------------------

start_attlsd() {
	cat >"$work/attlsd.hcl" <<EOF
environment "bench" {
  certificate = "$work/certs/server.pem"
  private_key = "$work/certs/server-key.pem"
}
inbound "bench" {
  port        = $1
  address     = "127.0.0.1"
  environment = "bench"
  backend     = "$backend"
}
EOF
	"$work/attlsd" run --policy "$work/attlsd.hcl" --log-level error &
}

start_stunnel() {
	cat >"$work/stunnel.conf" <<EOF
foreground = yes
pid =
debug = 3
[bench]
accept = 127.0.0.1:$1
connect = $backend
cert = $work/certs/server.pem
key = $work/certs/server-key.pem
sslVersionMin = TLSv1.2
ciphersuites = TLS_AES_128_GCM_SHA256
ciphers = ECDHE-ECDSA-AES128-GCM-SHA256
protocol = proxy
EOF
	stunnel4 "$work/stunnel.conf" 2>/dev/null &
}

start_haproxy() {
	cat >"$work/haproxy.cfg" <<EOF
global
  maxconn $((idle + 1000))
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
  ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 10s
  timeout client 1h
  timeout server 1h
frontend bench
  bind 127.0.0.1:$1 ssl crt $work/certs/combined.pem
  default_backend bench
backend bench
  server backend $backend send-proxy-v2
EOF
	haproxy -q -f "$work/haproxy.cfg" &
}

start_hitch() {
	cat >"$work/hitch.conf" <<EOF
frontend = "[127.0.0.1]:$1"
backend = "[${backend%:*}]:${backend##*:}"
pem-file = "$work/certs/combined.pem"
tls-protos = TLSv1.2 TLSv1.3
ciphersuites = "TLS_AES_128_GCM_SHA256"
ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"
workers = $(nproc)
write-proxy-v2 = on
daemon = off
EOF
	[ "$(id -u)" = 0 ] && printf 'user = "nobody"\ngroup = "nogroup"\n' >>"$work/hitch.conf"
	hitch --config="$work/hitch.conf" 2>/dev/null &
}

have() {
	case $1 in
	attlsd) true ;;
	stunnel) command -v stunnel4 >/dev/null ;;
	*) command -v "$1" >/dev/null ;;
	esac
}

version() {
	case $1 in
	attlsd) "$work/attlsd" version ;;
	stunnel) stunnel4 -version 2>&1 | awk '/^stunnel/ {print $1, $2; exit}' ;;
	haproxy) haproxy -v | awk 'NR==1 {print $1, $3}' ;;
	hitch) hitch --version 2>&1 | head -1 ;;
	esac
}

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# --- measuring ------------------------------------------------------------

declare -A res
proxies=()

# figure NAME CMD...: runs one loadgen measurement, keeping its lines as
# res[proxy,NAME.key].
figure() {
	local name=$1 k v
	shift
	while read -r k v; do
		res[$proxy,$name.$k]=$v
	done < <("$work/loadgen" "$@")
}

measure() {
	local addr=127.0.0.1:$1 pid=$2
	local c=(-addr "$addr" -ca "$work/certs/ca.pem" -pin "$work/certs/server.pem" -pid "$pid")
	local bytes=$((mib << 20))
	# Idle memory first, on the fresh process, so that earlier figures'
	# garbage counts for no proxy.
	figure idle idle "${c[@]}" -n "$idle" -settle 12s
	for mode in up down echo; do
		figure "$mode" throughput "${c[@]}" -mode "$mode" -conns "$conns" -bytes "$bytes"
	done
	for v in 1.3 1.2; do
		figure "hs$v" handshake "${c[@]}" -tls "$v" -duration "${seconds}s"
		figure "hs$v-resumed" handshake "${c[@]}" -tls "$v" -resume -duration "${seconds}s"
	done
	figure ping ping "${c[@]}"
}

n=1
for proxy in attlsd stunnel haproxy hitch; do
	n=$((n + 1))
	if ! have "$proxy"; then
		echo "$proxy is not installed: left out"
		continue
	fi
	echo "measuring $proxy ($(version "$proxy"))"
	p=$((port + n))
	"start_$proxy" "$p"
	pid=$!
	pids+=("$pid")
	wait_port "$p"
	measure "$p" "$pid"
	res[$proxy,version]=$(version "$proxy")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	proxies+=("$proxy")
done

# --- the table ------------------------------------------------------------

# Each row: key, label, better (hi or lo), how to compute it from res.
rows=(
	"up.throughput_MBps|throughput client to backend, MB/s|hi"
	"down.throughput_MBps|throughput backend to client, MB/s|hi"
	"echo.throughput_MBps|throughput echo (both ways), MB/s|hi"
	"cpu_per_gb|CPU seconds per GB relayed|lo"
	"hs1.3.handshakes_per_s|TLS 1.3 full handshakes/s|hi"
	"hs1.2.handshakes_per_s|TLS 1.2 full handshakes/s|hi"
	"hs1.3-resumed.handshakes_per_s|TLS 1.3 resumed handshakes/s|hi"
	"hs1.2-resumed.handshakes_per_s|TLS 1.2 resumed handshakes/s|hi"
	"cpu_per_hs1.3|CPU ms per full TLS 1.3 handshake|lo"
	"cpu_per_hs1.2|CPU ms per full TLS 1.2 handshake|lo"
	"ping.ping_p50_us|64-byte round trip p50, µs|lo"
	"ping.ping_p99_us|64-byte round trip p99, µs|lo"
	"idle.idle_KiB_per_conn|memory per idle TLS connection, KiB|lo"
)
for proxy in "${proxies[@]}"; do
	res[$proxy,cpu_per_gb]=$(awk -v a="${res[$proxy,up.cpu_s]}" -v b="${res[$proxy,down.cpu_s]}" \
		-v c="${res[$proxy,echo.cpu_s]}" -v x="${res[$proxy,up.GB]}" -v y="${res[$proxy,down.GB]}" \
		-v z="${res[$proxy,echo.GB]}" 'BEGIN {printf "%.3f", (a+b+c)/(x+y+z)}')
	for v in 1.3 1.2; do
		res[$proxy,cpu_per_hs$v]=$(awk -v c="${res[$proxy,hs$v.cpu_s]}" -v n="${res[$proxy,hs$v.handshakes]}" \
			'BEGIN {printf "%.3f", (n > 0) ? 1000 * c / n : 0}')
	done
done

table() {
	echo "attlsd side by side, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m),"
	echo "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo
	printf '%-42s' "figure"
	for proxy in "${proxies[@]}"; do printf '%12s' "$proxy"; done
	printf '%14s\n' "attlsd/best"
	for row in "${rows[@]}"; do
		IFS='|' read -r key label better <<<"$row"
		printf '%-42s' "$label"
		best=""
		for proxy in "${proxies[@]}"; do
			v=${res[$proxy,$key]:-}
			printf '%12s' "${v:--}"
			[ "$proxy" = attlsd ] || [ -z "$v" ] && continue
			if [ -z "$best" ] || awk -v v="$v" -v b="$best" -v d="$better" \
				'BEGIN {exit !((d == "hi" && v > b) || (d == "lo" && v < b))}'; then
				best=$v
			fi
		done
		ours=${res[attlsd,$key]:-}
		if [ -n "$best" ] && [ -n "$ours" ]; then
			awk -v o="$ours" -v b="$best" -v d="$better" 'BEGIN {
				r = b > 0 ? o / b : 0
				ok = (d == "hi") ? (r >= 1) : (r <= 1)
				printf "%10.2f %s\n", r, ok ? "  " : " <"
			}'
		else
			echo
		fi
	done
	echo
	echo "ratios: attlsd's figure over the best peer's; '<' marks a figure where attlsd is behind."
	echo "versions:"
	for proxy in "${proxies[@]}"; do echo "  $proxy: ${res[$proxy,version]}"; done
	echo "client: $conns connections x $mib MiB per throughput figure, ${seconds}s per handshake figure,"
	echo "  $idle idle connections; every proxy sends a PROXY header to the same backend."
}

mkdir -p "$(dirname "$out")"
table | tee "$out"
