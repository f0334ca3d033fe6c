package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// dial connects to rule's backend within the rule's connect_timeout, as
// stunnel's TIMEOUTconnect; a Rule built in code without one waits
// policy.DefaultConnectTimeout. A host name is resolved on each dial, so a
// DNS change reaches new connections without a reload.
func dial(ctx context.Context, rule *policy.Rule) (net.Conn, error) {
	timeout := rule.ConnectTimeout
	if timeout <= 0 {
		timeout = policy.DefaultConnectTimeout
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: keepAlive(rule.Backend)}
	c, err := d.DialContext(ctx, rule.Backend.Network, rule.Backend.Address)
	if err == nil {
		return c, nil
	}
	// A backend that drops the SYN (a full accept queue, a firewall, a
	// host that is down) gives only "i/o timeout"; say which bound fired.
	if isTimeout(err) && ctx.Err() == nil {
		err = &noAnswer{timeout}
	}
	return nil, &remoteError{err: fmt.Errorf("dial %s: %w", rule.Backend, err)}
}

// keepAlive is the Dialer.KeepAlive for b: none for a loopback address,
// whose peer cannot vanish without the kernel knowing (that saves four
// setsockopt calls per connection, a tenth of a sidecar's), Go's default
// of 15 s otherwise.
func keepAlive(b policy.Backend) time.Duration {
	host, _, err := net.SplitHostPort(b.Address)
	if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && ip.IsLoopback() {
		return -1
	}
	return 0
}

// noAnswer is a connect that timed out. It says which bound fired and
// still unwraps to os.ErrDeadlineExceeded, a timeout, so that the
// failure is counted as connect_timeout (backendReason).
type noAnswer struct{ after time.Duration }

func (e *noAnswer) Error() string { return fmt.Sprintf("no answer within %s", e.after) }
func (e *noAnswer) Unwrap() error { return os.ErrDeadlineExceeded }
