# Connection limits that are not whole numbers of 1 or more, or not
# durations above zero, on inbound, port-mapped and transparent rules.
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

environment "public" {
}

inbound "zero" {
  port               = 8443
  environment        = "web"
  backend            = "127.0.0.1:9080"
  max_connections    = 0
  idle_timeout       = "0s"
  half_close_timeout = "0"
}

inbound "negative" {
  port               = 8444
  environment        = "web"
  backend            = "127.0.0.1:9080"
  max_connections    = -1
  idle_timeout       = "-5m"
  half_close_timeout = "-1s"
}

inbound "wrong-types" {
  port               = 8445
  environment        = "web"
  backend            = "127.0.0.1:9080"
  max_connections    = "100"
  idle_timeout       = 300
  half_close_timeout = true
}

outbound "not-durations" {
  port               = 15003
  endpoint           = "api.example.com:443"
  environment        = "public"
  max_connections    = 2.5
  idle_timeout       = "5"
  half_close_timeout = "1 minute"
}

outbound "too-many" {
  remote_ports       = 443
  remote_addresses   = "any"
  environment        = "public"
  max_connections    = 3000000000
  idle_timeout       = null
  half_close_timeout = ""
}

intercept "netfilter" {
  port = 15001
}
