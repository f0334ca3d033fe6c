//go:build !linux

package proxy

import "net"

// acked returns 0: outside Linux a write's progress is judged by what
// attlsd wrote alone.
func acked(net.Conn) int64 { return 0 }
