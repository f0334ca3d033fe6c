package policy

import (
	"math"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// DefaultHalfCloseTimeout bounds how long the open direction of a
// half-closed connection may stay silent when a rule does not say.
const DefaultHalfCloseTimeout = 60 * time.Second

// DefaultWriteTimeout bounds how long a write to either peer of a
// connection may go without progress when a rule does not say.
const DefaultWriteTimeout = 60 * time.Second

// maxMaxConnections is the largest max_connections: far above what one
// process can hold open, and small enough for any int.
const maxMaxConnections = math.MaxInt32

// limitAttrs are the attributes that bound a rule's connections, on
// inbound and outbound rules alike.
var limitAttrs = []hcl.AttributeSchema{
	{Name: "connect_timeout"},
	{Name: "max_connections"},
	{Name: "idle_timeout"},
	{Name: "half_close_timeout"},
	{Name: "write_timeout"},
}

// withLimits adds the limit attributes to a rule's schema.
func withLimits(attrs ...hcl.AttributeSchema) []hcl.AttributeSchema {
	return append(attrs, limitAttrs...)
}

// limits decodes a rule's connection limits. Omitted, a rule waits
// DefaultConnectTimeout for its backend or endpoint to answer, takes any
// number of connections, keeps idle ones open (as AT-TLS does), gives a
// half-closed one DefaultHalfCloseTimeout and a stalled write
// DefaultWriteTimeout.
func (d *decoder) limits(r *Rule, a hcl.Attributes) {
	r.ConnectTimeout = d.duration(a["connect_timeout"], DefaultConnectTimeout, "")
	r.MaxConnections = d.maxConnections(a["max_connections"])
	r.IdleTimeout = d.duration(a["idle_timeout"], 0,
		"omit idle_timeout to keep idle connections open")
	r.HalfCloseTimeout = d.duration(a["half_close_timeout"], DefaultHalfCloseTimeout,
		"omit half_close_timeout for the default of "+
			formatDuration(DefaultHalfCloseTimeout))
	r.WriteTimeout = d.duration(a["write_timeout"], DefaultWriteTimeout,
		"omit write_timeout for the default of "+formatDuration(DefaultWriteTimeout))
}

// maxConnections decodes max_connections; 0 (unlimited) when absent or
// invalid.
func (d *decoder) maxConnections(attr *hcl.Attribute) int {
	if attr == nil {
		return 0
	}
	v, ok := d.typed(attr, cty.Number)
	if !ok {
		return 0
	}
	f := v.AsBigFloat()
	if n, ok := wholeIn(f, 1, maxMaxConnections); ok {
		return n
	}
	if f.IsInt() && f.Sign() > 0 {
		d.errorf(attr.Expr.Range(), "Invalid max_connections", "%s is above the "+
			"largest limit, %d; omit max_connections for no limit",
			f.Text('f', -1), maxMaxConnections)
		return 0
	}
	d.errorf(attr.Expr.Range(), "Invalid max_connections", "max_connections must "+
		"be a whole number of 1 or more, not %s; omit it for no limit", f.Text('f', -1))
	return 0
}
