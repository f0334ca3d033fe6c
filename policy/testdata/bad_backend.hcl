inbound "no_port" {
  port    = 8443
  tls     = false
  backend = "localhost"
}

inbound "empty_unix" {
  port    = 8444
  tls     = false
  backend = "unix:"
}

inbound "port_range" {
  port    = 8445
  tls     = false
  backend = "localhost:99999"
}

inbound "no_host" {
  port    = 8446
  tls     = false
  backend = ":9080"
}

inbound "space" {
  port    = 8447
  tls     = false
  backend = "my host:9080"
}

inbound "service_name" {
  port    = 8448
  tls     = false
  backend = "localhost:http"
}

inbound "url" {
  port    = 8449
  tls     = false
  backend = "http://localhost:9080"
}
