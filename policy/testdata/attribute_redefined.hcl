# An attribute set twice is one error among the others, all reported at
# once; the first definition counts.
environment "web" {
  certificate       = "certs/server.pem"
  private_key       = "certs/server-key.pem"
  handshake_timeout = "soon"
  handshake_timeout = "5s"
}

inbound "api" {
  port        = 0
  port        = 8443
  environment = "nope"
  backend     = "127.0.0.1:9080"
  colour      = "blue"
}

inbound "other" {
  port     = 8444
  tls      = false
  tls      = false
  backend  = "unix:"
  priority = 0
}
