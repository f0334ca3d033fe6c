environment "public" {
}

outbound "payments" {
  remote_ports     = 443
  remote_addresses = ["10.2.0.0/16"]
  environment      = "public"
}

outbound "web" {
  remote_ports     = "80-8080"
  remote_addresses = "any"
  environment      = "public"
}

# A port-mapped rule needs no intercept.
outbound "api" {
  port        = 15003
  endpoint    = "api.example.com:443"
  environment = "public"
}
