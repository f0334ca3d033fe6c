environment "public" {
}

outbound "zero" {
  remote_ports     = 0
  remote_addresses = "any"
  environment      = "public"
}

outbound "backwards" {
  remote_ports     = "443-80"
  remote_addresses = "any"
  environment      = "public"
}

outbound "words" {
  remote_ports     = "https"
  remote_addresses = "any"
  environment      = "public"
}

outbound "bool" {
  remote_ports     = true
  remote_addresses = "any"
  environment      = "public"
}

# Remote ranges are not bound, so any length is fine.
outbound "every_port" {
  remote_ports     = "1-65535"
  remote_addresses = ["192.0.2.0/24"]
  environment      = "public"
}

outbound "empty_list" {
  remote_ports     = 443
  remote_addresses = []
  environment      = "public"
}

outbound "lone_prefix" {
  remote_ports     = 443
  remote_addresses = "10.0.0.0/8"
  environment      = "public"
}

outbound "everything" {
  remote_ports     = 443
  remote_addresses = "all"
  environment      = "public"
}

outbound "bad_prefix" {
  remote_ports     = 443
  remote_addresses = ["10.0.0.0/33", "db.internal", 7]
  environment      = "public"
}

outbound "number" {
  remote_ports     = 443
  remote_addresses = 10
  environment      = "public"
}

outbound "any_in_list" {
  remote_ports     = 443
  remote_addresses = ["any"]
  environment      = "public"
}

intercept "netfilter" {
  port = 15001
}
