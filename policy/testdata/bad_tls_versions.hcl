environment "old" {
  tls_versions = ["1.0", "1.1", "1.2"]
}

environment "unknown" {
  tls_versions = ["1.4", "TLSv1.3", 1.3]
}

environment "empty" {
  tls_versions = []
}

environment "twice" {
  tls_versions = ["1.2", "1.2"]
}

environment "not_a_list" {
  tls_versions = "1.3"
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
