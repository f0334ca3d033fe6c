environment "web" {
  certificate = "certs/server.pem"
  private_key = 
}

inbound "api" {
  port = 8443
