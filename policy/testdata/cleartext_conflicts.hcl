environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"]
}

inbound "plain" {
  port        = 8080
  tls         = false
  environment = "web"
  client_auth = "full"
  backend     = "127.0.0.1:9080"
}
