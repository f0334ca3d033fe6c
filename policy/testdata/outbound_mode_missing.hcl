environment "public" {
}

outbound "neither" {
  environment = "public"
  priority    = 5
}

outbound "address_only" {
  address     = "127.0.0.1"
  environment = "public"
}

outbound "no_endpoint" {
  port        = 15003
  environment = "public"
}

outbound "no_port" {
  endpoint    = "api.example.com:443"
  environment = "public"
}

outbound "no_addresses" {
  remote_ports = 443
  environment  = "public"
}

outbound "no_ports" {
  remote_addresses = "any"
  environment      = "public"
}

# A transparent rule listens nowhere itself.
outbound "transparent_address" {
  remote_ports     = 443
  remote_addresses = "any"
  address          = "127.0.0.1"
  environment      = "public"
}

outbound "no_environment" {
  port     = 15004
  endpoint = "api.example.com:443"
}

outbound "unknown_environment" {
  port        = 15005
  endpoint    = "api.example.com:443"
  environment = "pubic"
}

intercept "netfilter" {
  port = 15001
}
