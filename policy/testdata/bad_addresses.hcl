inbound "name" {
  port    = 8443
  address = "localhost"
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "remotes" {
  port             = 8444
  remote_addresses = ["10.0.0.0/33", "10.0.0.1/8", "example.com", 10, "fe80::1%eth0"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "any_remotes" {
  port             = 8446
  remote_addresses = ["any"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "empty_remotes" {
  port             = 8445
  remote_addresses = []
  tls              = false
  backend          = "127.0.0.1:9080"
}
