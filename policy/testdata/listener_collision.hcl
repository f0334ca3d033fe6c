inbound "any" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "loopback" {
  port    = 8443
  address = "127.0.0.1"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "v4_wildcard" {
  port    = 9000
  address = "0.0.0.0"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "v6_wildcard" {
  port    = "8999-9001"
  address = "::"
  tls     = false
  backend = "127.0.0.1:9080"
}

# Two specific addresses share a port without trouble, and the same
# address spelled two ways shares one listener.
inbound "lo4" {
  port             = 7000
  address          = "127.0.0.1"
  remote_addresses = ["127.0.0.1"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "lo4_mapped" {
  port    = 7000
  address = "::ffff:127.0.0.1"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "lo6" {
  port    = 7000
  address = "::1"
  tls     = false
  backend = "127.0.0.1:9080"
}

# 0.0.0.0 is dual-stack in attlsd, as in Go: it takes IPv6 clients too.
inbound "zeros" {
  port    = 7100
  address = "0.0.0.0"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "v6_loopback" {
  port    = 7100
  address = "::1"
  tls     = false
  backend = "127.0.0.1:9080"
}
