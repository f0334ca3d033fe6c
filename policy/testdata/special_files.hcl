# Only regular files of at most 4 MiB are read: a named pipe would hang
# the load, a device or a huge file would fill memory.
environment "pipe_cert" {
  certificate = "certs/fifo.pem"
  private_key = "certs/server-key.pem"
}

environment "device_key" {
  certificate = "certs/server.pem"
  private_key = "certs/zero.pem"
}

environment "bad_trust" {
  trust = ["certs/huge.pem", "/dev/zero", "certs/expired"]
}

inbound "api" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}
