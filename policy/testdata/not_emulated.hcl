environment "web" {
  certificate            = "certs/server.pem"
  private_key            = "certs/server-key.pem"
  application_controlled = true
}

inbound "ftp" {
  port          = 8021
  environment   = "web"
  backend       = "127.0.0.1:2021"
  secondary_map = true
}
