inbound "zero" {
  port    = 0
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "too_high" {
  port    = 70000
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "fraction" {
  port    = 8443.5
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "backwards" {
  port    = "8445-8443"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "too_many" {
  port    = "10000-11024"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "words" {
  port    = "https"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "half_range" {
  port    = "8443-"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "bool" {
  port    = true
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "max_range" {
  port    = "20000-21023"
  tls     = false
  backend = "127.0.0.1:9080"
}
