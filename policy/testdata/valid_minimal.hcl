# The smallest useful policy: one TLS port in front of one backend.
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}
