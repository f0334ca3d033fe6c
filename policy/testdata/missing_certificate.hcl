# An environment without a key pair can only serve outbound rules.
environment "client_only" {
  trust = ["certs/ca.pem"]
}

inbound "api" {
  port        = 8443
  environment = "client_only"
  backend     = "127.0.0.1:9080"
}
