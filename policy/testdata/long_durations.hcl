# Durations have a maximum each: a value too large for Go's durations is
# too long, not bad syntax.
environment "slow" {
  handshake_timeout = "2h"
}

environment "at_most" {
  handshake_timeout = "1h"
}

inbound "overflow" {
  port               = 8443
  tls                = false
  backend            = "127.0.0.1:9080"
  idle_timeout       = "100000000h"
  half_close_timeout = "8761h"
  connect_timeout    = "1h0m1s"
}

inbound "negative_overflow" {
  port               = 8444
  tls                = false
  backend            = "127.0.0.1:9080"
  idle_timeout       = "-100000000h"
  half_close_timeout = "99999999999999999999ns"
}

inbound "longest" {
  port               = 8445
  tls                = false
  backend            = "127.0.0.1:9080"
  idle_timeout       = "8760h"
  half_close_timeout = "525600m"
  connect_timeout    = "1h"
}
