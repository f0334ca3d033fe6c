environment "web" {
  alpn = ["h2", "", "h2", null]
}

environment "not_a_list" {
  alpn = "h2"
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
