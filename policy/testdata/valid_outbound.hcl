# Outbound in both modes beside an inbound rule, with mutual TLS.
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}

# Presents a client certificate and trusts only the private CA.
environment "client" {
  certificate       = "certs/client.pem"
  private_key       = "certs/client-key.pem"
  trust             = ["certs/ca.pem"]
  tls_versions      = ["1.3"]
  alpn              = ["http/1.1"]
  handshake_timeout = "5s"
}

# No certificate, no trust: servers are verified against the system roots.
environment "public" {
}

inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}

# Port-mapped: the app connects in cleartext to 127.0.0.1:15003.
outbound "rest-api" {
  port        = 15003
  endpoint    = "api.example.com:443"
  environment = "public"
  priority    = 100
}

outbound "partner" {
  port            = "15010-15011"
  address         = "::1"
  endpoint        = "[2001:db8::10]:08443"
  server_name     = "partner.example.com"
  environment     = "client"
  connect_timeout = "2s"
}

# An IP endpoint is verified against the certificate's IP SANs.
outbound "by-ip" {
  port        = 15004
  endpoint    = "192.0.2.10:443"
  environment = "client"
}

# Transparent: connections netfilter redirected, by original destination.
outbound "payments" {
  remote_ports     = "443"
  remote_addresses = ["10.2.0.0/16"]
  server_name      = "payments.internal"
  environment      = "client"
  priority         = 100
  connect_timeout  = "10s"
}

outbound "internal" {
  remote_ports     = "8443-9443"
  remote_addresses = ["10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120"]
  environment      = "client"
  priority         = 50
}

# After "payments" in match order, so it takes the rest of port 443.
outbound "web-any" {
  remote_ports     = 443
  remote_addresses = "any"
  environment      = "public"
}

intercept "netfilter" {
  port    = 15001
  address = "127.0.0.1"
}

intercept "gateway" {
  port = "15002"
}
