# Development policy: attlsd terminates TLS on 127.0.0.1:8443 in front of
# the demo backend on 127.0.0.1:9080. `make run` makes the certificates in
# examples/certs on first use (attlsd certs init examples/certs).

environment "dev" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"] # verifies client certificates on "demo-mtls"
  alpn        = ["http/1.1"]     # the demo backend speaks HTTP/1.1 only
}

# Any client on port 8443: TLS in front of the demo backend.
inbound "demo" {
  port        = 8443
  address     = "127.0.0.1"
  environment = "dev"
  backend     = "127.0.0.1:9080"
}

# Port 8444 requires a client certificate signed by the dev CA. The
# backend learns that one was verified, never whose it was.
inbound "demo-mtls" {
  port        = 8444
  address     = "127.0.0.1"
  environment = "dev"
  client_auth = "required"
  backend     = "127.0.0.1:9080"
}
