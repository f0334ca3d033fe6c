inbound "catch_all" {
  port     = 8443
  priority = 10
  tls      = false
  backend  = "127.0.0.1:9080"
}

inbound "office" {
  port             = 8443
  remote_addresses = ["10.0.0.0/8"]
  tls              = false
  backend          = "127.0.0.1:9081"
}

# Equal priority: "a_first" sorts before "b_second" by name.
inbound "b_second" {
  port    = 9000
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "a_first" {
  port    = 9000
  tls     = false
  backend = "127.0.0.1:9080"
}

# Hidden on 9100 by one rule and on 9101 by another.
inbound "wide" {
  port    = "9100-9101"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "left" {
  port     = 9100
  priority = 2
  tls      = false
  backend  = "127.0.0.1:9080"
}

inbound "right" {
  port     = 9101
  priority = 2
  tls      = false
  backend  = "127.0.0.1:9080"
}

# Hidden on 9200 only: 9201 still reaches it, so this is fine.
inbound "partly" {
  port    = "9200-9201"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "override" {
  port     = 9200
  priority = 2
  tls      = false
  backend  = "127.0.0.1:9080"
}
