inbound "zero" {
  port     = 8443
  priority = 0
  tls      = false
  backend  = "127.0.0.1:9080"
}

inbound "too_high" {
  port     = 8444
  priority = 2000000001
  tls      = false
  backend  = "127.0.0.1:9080"
}

inbound "fraction" {
  port     = 8445
  priority = 1.5
  tls      = false
  backend  = "127.0.0.1:9080"
}

inbound "string" {
  port     = 8446
  priority = "high"
  tls      = false
  backend  = "127.0.0.1:9080"
}

inbound "highest" {
  port     = 8447
  priority = 2000000000
  tls      = false
  backend  = "127.0.0.1:9080"
}
