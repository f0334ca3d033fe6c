# Certificates that load but that peers would refuse: warnings, so that
# attlsd still starts while they are being replaced.
environment "expired" {
  certificate = "certs/expired/server.pem"
  private_key = "certs/expired/server-key.pem"
}

environment "future" {
  certificate = "certs/future/server.pem"
  private_key = "certs/future/server-key.pem"
}

# A client certificate presented by a server.
environment "client_cert" {
  certificate = "certs/client.pem"
  private_key = "certs/client-key.pem"
}

inbound "old" {
  port        = 8443
  environment = "expired"
  backend     = "127.0.0.1:9080"
}

inbound "early" {
  port        = 8444
  environment = "future"
  backend     = "127.0.0.1:9080"
}

inbound "wrong_usage" {
  port        = 8445
  environment = "client_cert"
  backend     = "127.0.0.1:9080"
}

# The same certificate presented as a client's is fine.
outbound "as_client" {
  port        = 15003
  endpoint    = "localhost:8443"
  environment = "client_cert"
}
