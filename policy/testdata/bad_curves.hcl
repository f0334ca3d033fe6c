environment "web" {
  curves = ["X25519", "P-256", "secp256r1", "x25519", "brainpoolP256r1", 23]
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
