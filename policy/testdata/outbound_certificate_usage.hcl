# A server-only certificate presented by a client loads, with a warning.
environment "server_cert" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

outbound "api" {
  port        = 15003
  endpoint    = "localhost:8443"
  environment = "server_cert"
}
