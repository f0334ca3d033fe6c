environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

inbound "typo" {
  port        = 8443
  environment = "wbe"
  backend     = "127.0.0.1:9080"
}

inbound "forgot" {
  port    = 8444
  backend = "127.0.0.1:9080"
}
