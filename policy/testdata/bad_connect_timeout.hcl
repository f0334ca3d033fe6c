environment "public" {
}

outbound "zero" {
  port            = 15001
  endpoint        = "api.example.com:443"
  environment     = "public"
  connect_timeout = "0s"
}

outbound "negative" {
  port            = 15002
  endpoint        = "api.example.com:443"
  environment     = "public"
  connect_timeout = "-1s"
}

outbound "no_unit" {
  port            = 15003
  endpoint        = "api.example.com:443"
  environment     = "public"
  connect_timeout = "10"
}

outbound "number" {
  port            = 15004
  endpoint        = "api.example.com:443"
  environment     = "public"
  connect_timeout = 10
}
