# Only an environment: no rule would take any connection.
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
