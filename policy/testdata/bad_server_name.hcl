environment "public" {
}

outbound "empty" {
  port        = 15001
  endpoint    = "api.example.com:443"
  server_name = ""
  environment = "public"
}

outbound "wildcard" {
  port        = 15002
  endpoint    = "api.example.com:443"
  server_name = "*.example.com"
  environment = "public"
}

outbound "zone" {
  port        = 15003
  endpoint    = "api.example.com:443"
  server_name = "fe80::1%eth0"
  environment = "public"
}

outbound "brackets" {
  port        = 15004
  endpoint    = "[::1]:443"
  server_name = "[::1]"
  environment = "public"
}

outbound "url" {
  remote_ports     = 443
  remote_addresses = "any"
  server_name      = "https://payments.internal"
  environment      = "public"
}

outbound "number" {
  remote_ports     = 8443
  remote_addresses = "any"
  server_name      = 42
  environment      = "public"
}

intercept "netfilter" {
  port = 15000
}
