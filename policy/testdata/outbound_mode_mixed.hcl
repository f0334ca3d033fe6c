environment "public" {
}

outbound "both" {
  port         = 15003
  endpoint     = "api.example.com:443"
  remote_ports = 443
  environment  = "public"
}

# Half of each mode.
outbound "half_each" {
  endpoint         = "api.example.com:443"
  remote_addresses = "any"
  environment      = "public"
}

# Mixed, with mistakes inside: all are reported.
outbound "mixed_and_wrong" {
  port             = 0
  remote_addresses = []
  environment      = "public"
}
