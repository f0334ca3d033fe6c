environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"]
}

inbound "api" {
  port           = 8443
  environment    = "web"
  client_auth    = "optional"
  proxy_protocol = "v3"
  backend        = "127.0.0.1:9080"
}

inbound "flags" {
  port           = 8444
  tls            = "yes"
  environment    = "web"
  client_auth    = "FULL"
  proxy_protocol = 2
  backend        = "127.0.0.1:9080"
}
