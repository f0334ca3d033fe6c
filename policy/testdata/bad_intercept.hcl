environment "public" {
}

outbound "payments" {
  remote_ports     = 443
  remote_addresses = "any"
  environment      = "public"
}

intercept "range" {
  port = "15001-15002"
}

intercept "zero" {
  port = 0
}

intercept "missing" {
  address = "127.0.0.1"
}

intercept "words" {
  port    = "redirect"
  address = "localhost"
}
