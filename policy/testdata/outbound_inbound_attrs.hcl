environment "public" {
}

outbound "api" {
  port                   = 15003
  endpoint               = "api.example.com:443"
  environment            = "public"
  tls                    = true
  client_auth            = "required"
  backend                = "127.0.0.1:9080"
  proxy_protocol         = "v2"
  application_controlled = true
  secondary_map          = true
  servername             = "api.example.com"
}

intercept "netfilter" {
  port     = 15001
  priority = 5
}
