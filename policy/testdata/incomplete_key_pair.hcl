environment "cert_only" {
  certificate = "certs/server.pem"
}

environment "key_only" {
  private_key = "certs/server-key.pem"
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
