environment "no_unit" {
  handshake_timeout = "10"
}

environment "negative" {
  handshake_timeout = "-1s"
}

environment "zero" {
  handshake_timeout = "0s"
}

environment "number" {
  handshake_timeout = 10
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
