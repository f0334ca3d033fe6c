# The CICS side of the z/OS Connect harness (examples/zosconnect/run.sh).
# CICS speaks cleartext HTTP to 127.0.0.1:5003; attlsd originates TLS to
# the z/OS Connect port 5004, presenting the environment's client
# certificate and verifying the server against the dev CA. On z/OS this is
# an AT-TLS outbound rule on the caller's stack. run.sh copies this file
# with the ports it was given.

environment "cics-client" {
  certificate = "certs/client.pem"     # the "personal certificate" CICS presents
  private_key = "certs/client-key.pem"
  trust       = ["certs/ca.pem"]       # verifies the z/OS side's server certificate
  alpn        = ["http/1.1"]
}

# CICS connects to 127.0.0.1:5003 (the default listen address of a
# port-mapped rule); TLS goes to localhost:5004, verified for "localhost".
outbound "to-zosconnect" {
  port        = 5003
  endpoint    = "localhost:5004"
  environment = "cics-client"
}
