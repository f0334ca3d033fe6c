# Valid, but nothing takes the connections redirected to the intercept.
environment "public" {
}

outbound "api" {
  port        = 15003
  endpoint    = "api.example.com:443"
  environment = "public"
}

intercept "netfilter" {
  port    = 15001
  address = "127.0.0.1"
}
