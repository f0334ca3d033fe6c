package policy

import (
	"fmt"
	"math/big"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// decoder turns attribute expressions into Go values, collecting every
// diagnostic on the way instead of stopping at the first.
type decoder struct {
	filename string
	baseDir  string
	diags    hcl.Diagnostics
	// files are the certificate, key and trust files the policy names,
	// loadable or not, for the reload watcher.
	files []string
	// now is when the policy is loaded, for certificate validity.
	now time.Time
}

// item is one string from a list attribute, with its own range so that a
// diagnostic can point at the element.
type item struct {
	s   string
	rng hcl.Range
}

// errorf records an error whose subject is rng.
func (d *decoder) errorf(rng hcl.Range, summary, format string, args ...any) {
	d.add(hcl.DiagError, rng, summary, fmt.Sprintf(format, args...))
}

// warnf records a warning whose subject is rng.
func (d *decoder) warnf(rng hcl.Range, summary, format string, args ...any) {
	d.add(hcl.DiagWarning, rng, summary, fmt.Sprintf(format, args...))
}

// add records one diagnostic.
func (d *decoder) add(sev hcl.DiagnosticSeverity, rng hcl.Range, summary, detail string) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: sev,
		Summary:  summary,
		Detail:   detail,
		Subject:  rng.Ptr(),
	})
}

// errorCount is the number of errors recorded so far; a step that leaves
// it unchanged decoded cleanly.
func (d *decoder) errorCount() int {
	n := 0
	for _, diag := range d.diags {
		if diag.Severity == hcl.DiagError {
			n++
		}
	}
	return n
}

// value evaluates attr without variables or functions. ok is false when
// evaluation failed (its diagnostics are kept) or the value is null.
func (d *decoder) value(attr *hcl.Attribute) (cty.Value, bool) {
	v, diags := attr.Expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	switch {
	case v.IsNull():
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s must not be null", attr.Name)
		return cty.NilVal, false
	case !v.IsWhollyKnown():
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name,
			"%s has no value without variables", attr.Name)
		return cty.NilVal, false
	}
	return v, true
}

// typed evaluates attr and checks that its value has type want.
func (d *decoder) typed(attr *hcl.Attribute, want cty.Type) (cty.Value, bool) {
	v, ok := d.value(attr)
	if !ok {
		return v, false
	}
	if !v.Type().Equals(want) {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s must be a %s, not %s",
			attr.Name, want.FriendlyName(), v.Type().FriendlyName())
		return v, false
	}
	return v, true
}

// str returns a string attribute's value.
func (d *decoder) str(attr *hcl.Attribute) (string, bool) {
	v, ok := d.typed(attr, cty.String)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

// boolean returns a bool attribute's value, or def when attr is absent.
func (d *decoder) boolean(attr *hcl.Attribute, def bool) bool {
	if attr == nil {
		return def
	}
	v, ok := d.typed(attr, cty.Bool)
	if !ok {
		return def
	}
	return v.True()
}

// integer returns a whole-number attribute's value within lo..hi, or def
// when attr is absent or invalid.
func (d *decoder) integer(attr *hcl.Attribute, lo, hi, def int) int {
	if attr == nil {
		return def
	}
	v, ok := d.typed(attr, cty.Number)
	if !ok {
		return def
	}
	n, ok := wholeIn(v.AsBigFloat(), lo, hi)
	if !ok {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s must be a whole number "+
			"from %d to %d, not %s", attr.Name, lo, hi, v.AsBigFloat().Text('f', -1))
		return def
	}
	return n
}

// wholeIn converts f to an int when it is a whole number within lo..hi.
func wholeIn(f *big.Float, lo, hi int) (int, bool) {
	if !f.IsInt() {
		return 0, false
	}
	n, acc := f.Int64()
	if acc != big.Exact || n < int64(lo) || n > int64(hi) {
		return 0, false
	}
	return int(n), true
}

// list returns the strings of a list attribute, each with its range.
// Elements that are not strings are reported and left out; ok is false
// only when the value is not a list at all.
func (d *decoder) list(attr *hcl.Attribute) (items []item, ok bool) {
	v, ok := d.value(attr)
	if !ok {
		return nil, false
	}
	ty := v.Type()
	if !ty.IsTupleType() && !ty.IsListType() && !ty.IsSetType() {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name,
			"%s must be a list of strings, not %s", attr.Name, ty.FriendlyName())
		return nil, false
	}
	vals := v.AsValueSlice()
	for i, v := range vals {
		rng := elementRange(attr, i, len(vals))
		if s, ok := d.element(attr, i, v, rng); ok {
			items = append(items, item{s: s, rng: rng})
		}
	}
	return items, true
}

// element checks that element i of a list is a string.
func (d *decoder) element(attr *hcl.Attribute, i int, v cty.Value, rng hcl.Range) (
	string, bool) {
	what := v.Type().FriendlyName()
	if v.IsNull() {
		what = "null"
	}
	if v.IsNull() || !v.Type().Equals(cty.String) {
		d.errorf(rng, "Invalid "+attr.Name, "%s must be a list of strings; "+
			"element %d is %s", attr.Name, i+1, what)
		return "", false
	}
	return v.AsString(), true
}

// elementRange is the source range of element i of a list literal, or the
// whole expression's range when the list was not written as a literal.
func elementRange(attr *hcl.Attribute, i, n int) hcl.Range {
	tuple, ok := attr.Expr.(*hclsyntax.TupleConsExpr)
	if !ok || len(tuple.Exprs) != n {
		return attr.Expr.Range()
	}
	return tuple.Exprs[i].Range()
}

// path returns a file path attribute resolved against the policy folder.
func (d *decoder) path(attr *hcl.Attribute) (string, bool) {
	s, ok := d.str(attr)
	if !ok {
		return "", false
	}
	if s == "" {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s is an empty path", attr.Name)
		return "", false
	}
	return d.resolve(s), true
}

// resolve makes p absolute, relative to the policy folder.
func (d *decoder) resolve(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.baseDir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// unique reports the second and later occurrences of a string in items
// and leaves them out.
func (d *decoder) unique(attr *hcl.Attribute, items []item) []item {
	seen := make(map[string]bool, len(items))
	out := items[:0:0]
	for _, it := range items {
		if seen[it.s] {
			d.errorf(it.rng, "Invalid "+attr.Name, "%q is listed twice", it.s)
			continue
		}
		seen[it.s] = true
		out = append(out, it)
	}
	return out
}

// isEmptyList reports whether attr is written as a list with no elements.
func isEmptyList(attr *hcl.Attribute) bool {
	v, diags := attr.Expr.Value(nil)
	return !diags.HasErrors() && v.IsWhollyKnown() && !v.IsNull() &&
		v.CanIterateElements() && v.LengthInt() == 0
}
