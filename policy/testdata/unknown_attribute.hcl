# Misspelled attributes and blocks.
listen = 8443

environment "web" {
  certificate  = "certs/server.pem"
  private_key  = "certs/server-key.pem"
  tls_version  = ["1.3"]
  keyring      = "attlsd/ring"
}

inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
  clientauth  = "full"
}

inbound "two" "labels" {
  port    = 8444
  tls     = false
  backend = "127.0.0.1:9080"
}

outbund "upstream" {
  port = 443
}
