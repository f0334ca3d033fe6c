environment "public" {
}

outbound "no_port" {
  port        = 15001
  endpoint    = "api.example.com"
  environment = "public"
}

outbound "bare_ipv6" {
  port        = 15002
  endpoint    = "2001:db8::1:443"
  environment = "public"
}

outbound "port_zero" {
  port        = 15003
  endpoint    = "api.example.com:0"
  environment = "public"
}

outbound "named_port" {
  port        = 15004
  endpoint    = "api.example.com:https"
  environment = "public"
}

outbound "bad_host" {
  port        = 15005
  endpoint    = "api example.com:443"
  environment = "public"
}

outbound "no_host" {
  port        = 15006
  endpoint    = ":443"
  environment = "public"
}

outbound "url" {
  port        = 15007
  endpoint    = "https://api.example.com:443"
  environment = "public"
}

outbound "number" {
  port        = 15008
  endpoint    = 443
  environment = "public"
}
