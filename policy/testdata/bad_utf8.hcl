# A policy saved in Latin-1: the e of café is one byte, not UTF-8.
inbound "café" {
  port = 8443
}
