# A key that group or others can read loads, with a warning.
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/open-key.pem"
}

inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}
