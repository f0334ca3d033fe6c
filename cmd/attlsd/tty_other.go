//go:build !linux

package main

import "io"

// isTerminal reports false: outside Linux the console log has no colour.
func isTerminal(io.Writer) bool { return false }
