#!/usr/bin/env bash
# Runs the z/OS Connect topology on one machine, AT-TLS both ways:
#
#   CICS --cleartext--> CICS side attlsd (outbound, cics.hcl)
#        --TLS, client certificate--> z/OS side attlsd (inbound, zos.hcl)
#        --cleartext + PROXY v2--> z/OS Connect
#        --cleartext--> z/OS side attlsd (outbound, zos.hcl)
#        --TLS, client certificate--> RESTful endpoint (does its own TLS)
#
# One CICS call goes through, CICS prints each hop, everything stops, and
# the exit status is non-zero if any hop failed. `make zosconnect` runs it.
#
# Environment (defaults in brackets):
#   CICS_PORT [5003]        CICS side outbound rule, where CICS connects
#   ZOS_PORT [5004]         z/OS side inbound rule, client_auth = "required"
#   ZOSCONNECT_PORT [9080]  the z/OS Connect stand-in, cleartext
#   API_PORT [5005]         z/OS side outbound rule toward the RESTful API
#   REST_PORT [5443]        the RESTful endpoint stand-in, TLS
#   ATTLSD [bin/attlsd]     built when missing
#   STANDINS                the stand-in binary; built into bin/zosconnect when unset
#   CERTS [examples/zosconnect/certs]  made by `attlsd certs init` when missing
#   WORK_DIR                policies, logs and report.json; when unset, a
#                           temporary folder, removed unless the chain failed
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

CICS_PORT=${CICS_PORT:-5003}
ZOS_PORT=${ZOS_PORT:-5004}
ZOSCONNECT_PORT=${ZOSCONNECT_PORT:-9080}
API_PORT=${API_PORT:-5005}
REST_PORT=${REST_PORT:-5443}
GO=${GO:-go}
ATTLSD=${ATTLSD:-bin/attlsd}
CERTS=${CERTS:-$here/certs}

for p in "$CICS_PORT" "$ZOS_PORT" "$ZOSCONNECT_PORT" "$API_PORT" "$REST_PORT"; do
  [[ $p =~ ^[0-9]+$ ]] || { echo "run.sh: port $p is not a number" >&2; exit 2; }
done

# Binaries and dev certificates.
[ -x "$ATTLSD" ] || "$GO" build -o "$ATTLSD" ./cmd/attlsd
if [ -z "${STANDINS:-}" ]; then
  STANDINS=bin/zosconnect
  "$GO" build -o "$STANDINS" ./examples/zosconnect
fi
[ -s "$CERTS/ca.pem" ] || "$ATTLSD" certs init "$CERTS" >/dev/null
CERTS=$(cd "$CERTS" && pwd)

work=${WORK_DIR:-}
remove_work=
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/attlsd-zosconnect.XXXXXX")
  remove_work=1
fi
mkdir -p "$work"

# render copies a policy into the work folder with the ports given. The
# copy names certs/... relative to itself, so the folder links to CERTS.
render() {
  sed -e "s/\<5003\>/@CICS@/g; s/\<5004\>/@ZOS@/g; s/\<9080\>/@ZC@/g" \
      -e "s/\<5005\>/@API@/g; s/\<5443\>/@REST@/g" \
      -e "s/@CICS@/$CICS_PORT/g; s/@ZOS@/$ZOS_PORT/g; s/@ZC@/$ZOSCONNECT_PORT/g" \
      -e "s/@API@/$API_PORT/g; s/@REST@/$REST_PORT/g" \
      "$here/$1" >"$work/$1"
}
ln -sfn "$CERTS" "$work/certs"
render cics.hcl
render zos.hcl

# Processes, stopped in reverse order of start on any exit.
names=() pids=() logs=()
start() {
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  names+=("$name") pids+=($!) logs+=("$name")
}

# stop sends SIGTERM to everything started and fails if any process did
# not exit 0 (attlsd exits 0 after a clean stop).
stop() {
  local i rc=0
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if ! wait "${pids[i]}"; then
      echo "run.sh: ${names[i]} did not stop cleanly" >&2
      rc=1
    fi
  done
  names=() pids=()
  return $rc
}

show_logs() {
  local name
  for name in "${logs[@]}"; do
    echo "--- $name ($work/$name.log)"
    tail -n 30 "$work/$name.log" 2>/dev/null || true
  done
}

cleanup() {
  stop || true
  [ -z "$remove_work" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for waits until the newest process has logged pattern, or fails
# when it exits first or 15 s pass.
wait_for() {
  local pattern=$1 name=${names[-1]} pid=${pids[-1]} i
  for ((i = 0; i < 150; i++)); do
    grep -qs "$pattern" "$work/$name.log" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: $name did not start:" >&2
  cat "$work/$name.log" >&2 || true
  return 1
}

# wait_closed waits up to 5 s for an attlsd to log n ended connections:
# CICS has its answer before the connections behind it have finished
# closing, and stopping attlsd then would cut them.
wait_closed() {
  local name=$1 n=$2 i
  for ((i = 0; i < 50; i++)); do
    [ "$(grep -c '"connection closed"' "$work/$name.log")" -ge "$n" ] && return 0
    sleep 0.1
  done
}

start restful "$STANDINS" restful --listen "127.0.0.1:$REST_PORT" \
  --cert "$CERTS/server.pem" --key "$CERTS/server-key.pem" --ca "$CERTS/ca.pem"
wait_for "listening on"
start zos-attlsd "$ATTLSD" run --policy "$work/zos.hcl" --log-level debug
wait_for '"attlsd started"'
start zosconnect "$STANDINS" zosconnect --listen "127.0.0.1:$ZOSCONNECT_PORT" \
  --api "http://127.0.0.1:$API_PORT" --client-cert "$CERTS/client.pem"
wait_for "listening on"
start cics-attlsd "$ATTLSD" run --policy "$work/cics.hcl" --log-level debug
wait_for '"attlsd started"'

cat <<MSG
z/OS Connect topology, AT-TLS both ways:
  CICS            -> 127.0.0.1:$CICS_PORT   outbound "to-zosconnect" (cics.hcl): TLS + client cert -> localhost:$ZOS_PORT
  z/OS side       -> 127.0.0.1:$ZOS_PORT   inbound "zosconnect" (zos.hcl), client_auth required: PROXY v2 -> 127.0.0.1:$ZOSCONNECT_PORT
  z/OS Connect    -> 127.0.0.1:$API_PORT   outbound "restful-api" (zos.hcl): TLS + client cert -> localhost:$REST_PORT
  RESTful API        127.0.0.1:$REST_PORT   its own TLS, client certificate required

MSG

rc=0
"$STANDINS" cics --to "127.0.0.1:$CICS_PORT" --report "$work/report.json" || rc=1
if [ $rc -eq 0 ]; then
  wait_closed cics-attlsd 1 # to-zosconnect
  wait_closed zos-attlsd 2  # zosconnect, restful-api
fi
stop || rc=1
if [ $rc -ne 0 ]; then
  show_logs >&2
  remove_work=
  echo "run.sh: the chain failed; policies and logs are in $work" >&2
  exit 1
fi
echo
echo "every hop ok"
