# Names go into PROXY headers, logs and metric labels: no control
# characters, no format characters, not only white space.
environment "web\u0000" {
}

inbound "two\nlines" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "   " {
  port    = 8444
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "tab\there" {
  port    = 8445
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "del\u007f" {
  port    = 8446
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "c1\u0085" {
  port    = 8447
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "rtl\u202egnp.exe" {
  port    = 8448
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "zero\u200bwidth" {
  port    = 8449
  tls     = false
  backend = "127.0.0.1:9080"
}

inbound "line\u2028sep" {
  port    = 8450
  tls     = false
  backend = "127.0.0.1:9080"
}

intercept "\r" {
  port = 15001
}

# Quotes, spaces inside, punctuation and other scripts are fine.
inbound "say \"hi\" - 東京/α_1" {
  port    = 8451
  tls     = false
  backend = "127.0.0.1:9080"
}
