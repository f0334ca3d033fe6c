# Every attribute, shared listeners and AT-TLS match order.
environment "web" {
  certificate       = "certs/server.pem"
  private_key       = "certs/server-key.pem"
  trust             = ["certs/ca.pem"]
  tls_versions      = ["1.3", "1.2"]
  cipher_suites     = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "0xCCA9", "c02c"]
  curves            = ["X25519MLKEM768", "X25519", "secp384r1"]
  alpn              = ["h2", "http/1.1"]
  handshake_timeout = "2500ms"
}

environment "modern" {
  certificate  = "certs/server.pem"
  private_key  = "certs/server-key.pem"
  tls_versions = ["1.3"]
}

# Partners get verified client certificates; everyone else is refused.
inbound "partners" {
  port             = 8443
  remote_addresses = ["10.1.0.0/16", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120"]
  priority         = 200
  environment      = "web"
  client_auth      = "required"
  backend          = "app.internal:9080"
  proxy_protocol   = "v1"
}

inbound "office" {
  port             = 8443
  remote_addresses = ["10.0.0.0/8"]
  priority         = 100
  environment      = "web"
  client_auth      = "passthru"
  backend          = "unix:run/app.sock"
}

# Same priority as "office": the name breaks the tie.
inbound "lab" {
  port             = 8443
  remote_addresses = ["10.9.0.0/16"]
  priority         = 100
  environment      = "web"
  client_auth      = "full"
  backend          = "[::1]:9080"
  proxy_protocol   = "none"
}

# A range, partly overridden on 9001 by a higher-priority catch-all.
inbound "range" {
  port        = "9000-9002"
  environment = "modern"
  backend     = "127.0.0.1:9080"
}

inbound "special" {
  port        = "9001"
  priority    = 5
  environment = "modern"
  backend     = "127.0.0.1:9081"
}

# Explicit cleartext on specific loopback addresses sharing a port.
inbound "health4" {
  port    = 8080
  address = "127.0.0.1"
  tls     = false
  backend = "127.0.0.1:9090"
}

inbound "health6" {
  port        = 8080
  address     = "::1"
  tls         = false
  client_auth = "none"
  backend     = "unix:/run/health.sock"
}
