environment "public" {
}

# Port-mapped rules on one socket: the first takes every app.
outbound "a_first" {
  port        = 15003
  endpoint    = "a.example.com:443"
  environment = "public"
}

outbound "b_second" {
  port        = 15003
  endpoint    = "b.example.com:443"
  environment = "public"
}

# Transparent: an earlier "any" rule on the same port takes everything.
outbound "any_https" {
  remote_ports     = 443
  remote_addresses = "any"
  priority         = 10
  environment      = "public"
}

outbound "payments" {
  remote_ports     = "443"
  remote_addresses = ["10.2.0.0/16"]
  environment      = "public"
}

# Wider prefixes and ports first.
outbound "wide" {
  remote_ports     = "8000-9000"
  remote_addresses = ["10.0.0.0/8", "192.0.2.0/24"]
  priority         = 5
  environment      = "public"
}

outbound "narrow" {
  remote_ports     = 8443
  remote_addresses = ["10.1.0.0/16", "192.0.2.128/25"]
  environment      = "public"
}

# Each only partly covered: fine.
outbound "other_prefix" {
  remote_ports     = 8443
  remote_addresses = ["10.1.0.0/16", "198.51.100.0/24"]
  environment      = "public"
}

outbound "more_ports" {
  remote_ports     = "8443-9443"
  remote_addresses = ["10.1.0.0/16"]
  environment      = "public"
}

outbound "any_after_list" {
  remote_ports     = 8080
  remote_addresses = "any"
  priority         = 4
  environment      = "public"
}

intercept "netfilter" {
  port = 15001
}
