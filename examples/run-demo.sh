#!/usr/bin/env bash
# Runs the demo: the cleartext backend on 127.0.0.1:9080 and attlsd in
# front of it with examples/dev.hcl. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin
[ -s examples/certs/ca.pem ] || "$bin/attlsd" certs init examples/certs >/dev/null

"$bin/demo-backend" --listen 127.0.0.1:9080 &
backend=$!
trap 'kill $backend 2>/dev/null' EXIT

cat <<MSG

attlsd is starting in front of the demo backend. From another terminal:

  curl --cacert examples/certs/ca.pem https://localhost:8443/
  curl --cacert examples/certs/ca.pem --cert examples/certs/client.pem \\
       --key examples/certs/client-key.pem https://localhost:8444/

MSG
"$bin/attlsd" run --policy examples/dev.hcl --log-format console
