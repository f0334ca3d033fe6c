# Every IPv4 client first, then one of them.
inbound "all_v4" {
  port             = 8500
  remote_addresses = ["0.0.0.0/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "loopback_only" {
  port             = 8500
  remote_addresses = ["127.0.0.1"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

# A wider prefix first.
inbound "ten" {
  port             = 8501
  remote_addresses = ["10.0.0.0/8"]
  priority         = 2
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "ten_one" {
  port             = 8501
  remote_addresses = ["10.1.0.0/16"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

# An IPv4-mapped address is the IPv4 address.
inbound "all_v4_again" {
  port             = 8502
  remote_addresses = ["0.0.0.0/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "mapped_loopback" {
  port             = 8502
  remote_addresses = ["::ffff:127.0.0.1"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

# An IPv4 listener has IPv4 clients only: 0.0.0.0/0 takes them all.
inbound "v4_listener_all" {
  port             = 8503
  address          = "127.0.0.1"
  remote_addresses = ["0.0.0.0/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "v4_listener_rest" {
  port             = 8503
  address          = "127.0.0.1"
  tls              = false
  backend          = "127.0.0.1:9080"
}

# An IPv6 listener has IPv6 clients only: ::/0 takes them all.
inbound "v6_listener_all" {
  port             = 8504
  address          = "::1"
  remote_addresses = ["::/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "v6_listener_rest" {
  port             = 8504
  address          = "::1"
  tls              = false
  backend          = "127.0.0.1:9080"
}

# On all addresses, IPv6 clients still reach the rule without
# remote_addresses: fine.
inbound "wildcard_v4" {
  port             = 8505
  remote_addresses = ["0.0.0.0/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "wildcard_rest" {
  port             = 8505
  tls              = false
  backend          = "127.0.0.1:9080"
}

# 0.0.0.0 is a dual-stack listener too: fine.
inbound "zeros_v4" {
  port             = 8506
  address          = "0.0.0.0"
  remote_addresses = ["0.0.0.0/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "zeros_rest" {
  port             = 8506
  address          = "0.0.0.0"
  tls              = false
  backend          = "127.0.0.1:9080"
}

# Both families before a rule without remote_addresses.
inbound "both_v4" {
  port             = 8507
  remote_addresses = ["0.0.0.0/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "both_v6" {
  port             = 8507
  remote_addresses = ["::/0"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "both_rest" {
  port             = 8507
  tls              = false
  backend          = "127.0.0.1:9080"
}

# Each prefix inside a prefix of a different earlier rule.
inbound "office" {
  port             = 8508
  remote_addresses = ["10.0.0.0/8"]
  priority         = 3
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "lab" {
  port             = 8508
  remote_addresses = ["192.168.0.0/16"]
  priority         = 3
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "office_and_lab" {
  port             = 8508
  remote_addresses = ["10.1.0.0/16", "192.168.1.0/24"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

# Partly covered: fine.
inbound "partial_ten" {
  port             = 8509
  remote_addresses = ["10.0.0.0/8"]
  priority         = 3
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "partial_more" {
  port             = 8509
  remote_addresses = ["10.1.0.0/16", "192.0.2.0/24"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

# Covered only by two halves together: not detected, as documented.
inbound "halves" {
  port             = 8510
  remote_addresses = ["10.0.0.0/9", "10.128.0.0/9"]
  priority         = 3
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "whole" {
  port             = 8510
  remote_addresses = ["10.0.0.0/8"]
  tls              = false
  backend          = "127.0.0.1:9080"
}

# Hidden on 8511, reached on 8512: fine.
inbound "one_port" {
  port             = 8511
  remote_addresses = ["10.0.0.0/8"]
  priority         = 5
  tls              = false
  backend          = "127.0.0.1:9080"
}

inbound "two_ports" {
  port             = "8511-8512"
  remote_addresses = ["10.1.0.0/16"]
  tls              = false
  backend          = "127.0.0.1:9080"
}
