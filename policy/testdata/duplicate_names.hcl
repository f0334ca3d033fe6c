environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

environment "web" {
  certificate = "certs/client.pem"
  private_key = "certs/client-key.pem"
}

inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}

inbound "api" {
  port        = 8444
  environment = "web"
  backend     = "127.0.0.1:9081"
}

inbound "" {
  port    = 8445
  tls     = false
  backend = "127.0.0.1:9082"
}
