# The z/OS side of the z/OS Connect harness (examples/zosconnect/run.sh).
# Inbound: attlsd terminates TLS on 5004, demands a client certificate and
# hands z/OS Connect cleartext with a PROXY v2 header, never the
# certificate. Outbound: z/OS Connect calls the RESTful API in cleartext on
# 127.0.0.1:5005 and attlsd originates TLS to the endpoint on 5443 with a
# client certificate. run.sh copies this file with the ports it was given.

environment "zos-server" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"] # verifies CICS's client certificate
  alpn        = ["http/1.1"]
}

environment "zos-client" {
  certificate = "certs/client.pem"     # the server's personal certificate
  private_key = "certs/client-key.pem"
  trust       = ["certs/ca.pem"]       # verifies the RESTful endpoint
  alpn        = ["http/1.1"]
}

# AT-TLS inbound policy on the z/OS Connect port: HandshakeRole
# ServerWithClientAuth, ClientAuthType Required.
inbound "zosconnect" {
  port           = 5004
  address        = "127.0.0.1"
  environment    = "zos-server"
  client_auth    = "required"
  backend        = "127.0.0.1:9080" # the z/OS Connect stand-in, cleartext
  proxy_protocol = "v2"
}

# AT-TLS outbound policy from z/OS Connect to the RESTful API endpoint.
outbound "restful-api" {
  port        = 5005
  endpoint    = "localhost:5443"
  environment = "zos-client"
}
