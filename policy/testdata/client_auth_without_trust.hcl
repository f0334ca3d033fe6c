environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

inbound "full" {
  port        = 8443
  environment = "web"
  client_auth = "full"
  backend     = "127.0.0.1:9080"
}

inbound "required" {
  port        = 8444
  environment = "web"
  client_auth = "required"
  backend     = "127.0.0.1:9080"
}

# Passthru asks for a certificate without verifying it: no trust needed.
inbound "passthru" {
  port        = 8445
  environment = "web"
  client_auth = "passthru"
  backend     = "127.0.0.1:9080"
}
