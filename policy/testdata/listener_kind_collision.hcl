environment "public" {
}

inbound "plain" {
  port    = 9000
  address = "127.0.0.1"
  tls     = false
  backend = "127.0.0.1:9080"
}

outbound "api" {
  port        = 9000
  address     = "127.0.0.1"
  endpoint    = "api.example.com:443"
  environment = "public"
}

# Outbound listens on 127.0.0.1 by default, which the wildcard covers.
inbound "wildcard" {
  port    = 9100
  tls     = false
  backend = "127.0.0.1:9080"
}

outbound "loopback" {
  port        = 9100
  endpoint    = "api.example.com:443"
  environment = "public"
}

outbound "range" {
  port        = "15000-15002"
  endpoint    = "api.example.com:443"
  environment = "public"
}

intercept "netfilter" {
  port    = 15001
  address = "127.0.0.1"
}

# Two intercepts never share a socket.
intercept "one" {
  port = 15005
}

intercept "two" {
  port = 15005
}

outbound "payments" {
  remote_ports     = 443
  remote_addresses = "any"
  environment      = "public"
}
