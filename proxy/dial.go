package proxy

import (
	"context"
	"net"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// DialTimeout bounds connecting to a backend, as stunnel's TIMEOUTconnect.
const DialTimeout = 10 * time.Second

// dial connects to a rule's backend. A host name is resolved on each dial,
// so a DNS change reaches new connections without a reload.
func dial(ctx context.Context, b policy.Backend) (net.Conn, error) {
	d := net.Dialer{Timeout: DialTimeout}
	return d.DialContext(ctx, b.Network, b.Address)
}
