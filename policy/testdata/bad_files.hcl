# Each environment fails to load a different file.
environment "missing_cert" {
  certificate = "certs/nope.pem"
  private_key = "certs/server-key.pem"
}

environment "garbage_cert" {
  certificate = "certs/garbage.pem"
  private_key = "certs/server-key.pem"
}

environment "missing_key" {
  certificate = "certs/server.pem"
  private_key = "certs/nope-key.pem"
}

environment "garbage_key" {
  certificate = "certs/server.pem"
  private_key = "certs/garbage.pem"
}

environment "mismatched_key" {
  certificate = "certs/server.pem"
  private_key = "certs/other-key.pem"
}

environment "swapped" {
  certificate = "certs/server.pem"
  private_key = "certs/server.pem"
}

environment "bad_trust" {
  trust = ["certs/ca.pem", "certs/nope-ca.pem", "certs/garbage.pem"]
}

environment "empty_paths" {
  certificate = ""
  private_key = ""
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
