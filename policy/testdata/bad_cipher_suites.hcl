environment "weak" {
  cipher_suites = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "0x000A",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "0x1302",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA257",
    "0xZZZZ",
    "0xC02B",
    "0xC02B",
  ]
}

# Valid suites that can never be used: a warning, not an error.
environment "tls13_only" {
  tls_versions  = ["1.3"]
  cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
