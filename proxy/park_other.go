//go:build !linux

package proxy

import "time"

// parker would hold quiet relay directions off their goroutines; outside
// Linux there is none, and quiet directions wait on their goroutines.
type parker struct{}

var parking parker

func (parker) available() bool                     { return false }
func (parker) park(*direction, time.Duration) bool { return false }
func (parker) unpark(*direction)                   {}
func (parker) count() int                          { return 0 }
