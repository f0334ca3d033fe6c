# Connection limits on inbound, port-mapped and transparent rules, beside
# rules that keep the defaults (a 10s connect timeout among them).
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

environment "public" {
}

inbound "bounded" {
  port               = 8443
  environment        = "web"
  backend            = "127.0.0.1:9080"
  connect_timeout    = "1500ms"
  max_connections    = 500
  idle_timeout       = "5m"
  half_close_timeout = "30s"
}

# No limits: a 10s connect, any number of connections, idle ones kept,
# 60s half-closed.
inbound "defaults" {
  port    = 8080
  tls     = false
  backend = "127.0.0.1:9090"
}

outbound "rest-api" {
  port            = 15003
  endpoint        = "api.example.com:443"
  environment     = "public"
  max_connections = 1
  idle_timeout    = "1h30m"
}

outbound "payments" {
  remote_ports       = "443"
  remote_addresses   = ["10.2.0.0/16"]
  environment        = "public"
  half_close_timeout = "2500ms"
}

intercept "netfilter" {
  port    = 15001
  address = "127.0.0.1"
}
