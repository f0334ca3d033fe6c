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

environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

inbound "in_zero" {
  port            = 8443
  environment     = "web"
  backend         = "127.0.0.1:9080"
  connect_timeout = "0s"
}

inbound "in_no_unit" {
  port            = 8444
  environment     = "web"
  backend         = "127.0.0.1:9080"
  connect_timeout = "5"
}

inbound "in_list" {
  port            = 8445
  environment     = "web"
  backend         = "127.0.0.1:9080"
  connect_timeout = ["10s"]
}
