# Prefixes written with host bits: each still takes its whole network, so
# attlsd warns in case one address was meant.
inbound "office" {
  port             = 8080
  tls              = false
  backend          = "127.0.0.1:9080"
  remote_addresses = ["10.0.0.1/8", "10.0.0.0/8", "::ffff:10.1.0.0/104", "fd00::1/64", "192.168.1.1"]
}
