environment "public" {
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}

outbound "api" {
  port        = 15003
  endpoint    = "api.example.com:443"
  environment = "public"
}

outbound "twice" {
  remote_ports     = 443
  remote_addresses = "any"
  environment      = "public"
}

outbound "twice" {
  remote_ports     = 8443
  remote_addresses = "any"
  environment      = "public"
}

# Intercepts have names of their own: "api" is fine here.
intercept "api" {
  port = 15001
}

intercept "api" {
  port = 15002
}

intercept "" {
  port = 15004
}
