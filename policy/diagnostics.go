package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostics renders diags one per line, in source order:
//
//	file:line:col: summary: detail
//
// A warning's message starts with "warning: ". A diagnostic about the
// whole file (a subject with no line) prints as "file: message", and one
// with no subject at all as the message alone. Every line ends in a
// newline; no diagnostics give "".
func FormatDiagnostics(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range sortDiagnostics(diags) {
		b.WriteString(formatDiagnostic(d))
		b.WriteByte('\n')
	}
	return b.String()
}

// formatDiagnostic renders one diagnostic without a trailing newline.
func formatDiagnostic(d *hcl.Diagnostic) string {
	msg := d.Summary
	if d.Detail != "" {
		msg += ": " + d.Detail
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if d.Severity == hcl.DiagWarning {
		msg = "warning: " + msg
	}
	switch s := d.Subject; {
	case s == nil:
		return msg
	case s.Start.Line == 0:
		return s.Filename + ": " + msg
	default:
		return fmt.Sprintf("%s:%d:%d: %s", s.Filename, s.Start.Line, s.Start.Column, msg)
	}
}

// sortDiagnostics returns diags ordered by file and position; whole-file
// diagnostics come first and ties keep their order.
func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	out := slices.Clone(diags)
	slices.SortStableFunc(out, func(a, b *hcl.Diagnostic) int {
		ra, rb := subjectOf(a), subjectOf(b)
		return cmp.Or(
			cmp.Compare(ra.Filename, rb.Filename),
			cmp.Compare(ra.Start.Line, rb.Start.Line),
			cmp.Compare(ra.Start.Column, rb.Start.Column),
		)
	})
	return out
}

// subjectOf returns the diagnostic's subject, or an empty range.
func subjectOf(d *hcl.Diagnostic) hcl.Range {
	if d.Subject == nil {
		return hcl.Range{}
	}
	return *d.Subject
}

// fileRange is the subject of a diagnostic about a whole file.
func fileRange(filename string) *hcl.Range {
	return &hcl.Range{Filename: filename}
}
