# Policies are data: no variables, no functions.
environment "web" {
  certificate = "${var.dir}/server.pem"
  private_key = file("certs/server-key.pem")
}

inbound "api" {
  port        = 8000 + 443
  environment = "web"
  backend     = "127.0.0.1:${9000 + 80}"
  priority    = null
}
