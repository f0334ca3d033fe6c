inbound "nothing" {
}

inbound "no_backend" {
  port = 8443
  tls  = false
}
