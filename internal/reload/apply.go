package reload

import (
	"errors"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// try reloads, unless the files are still being written: then it waits
// for them to settle, and the reload it puts off keeps what was asked (a
// forced reload stays forced) and who waits for its answer. A rejected
// reload after a burst of file events is tried once more after
// retryDelay, in case a file was caught half written.
func (r *Reloader) try(a attempt, again bool) {
	if p := r.pending; p != nil {
		a.force = a.force || p.force
		if a.trigger == "file" {
			a.trigger = p.trigger
		}
	}
	p, diags, settled := r.load()
	if !settled && r.waitSettle(a) {
		return
	}
	r.pending, r.unsettled = nil, time.Time{}
	gen, err := r.apply(a, p, diags)
	for _, reply := range r.waiting {
		reply <- result{gen, err}
	}
	r.waiting = nil
	if err != nil && again {
		r.retry.Reset(retryDelay)
	}
}

// waitSettle puts a off until the files settle, and reports whether it
// did. After unsettledMax of changing files it stops waiting.
func (r *Reloader) waitSettle(a attempt) bool {
	if r.unsettled.IsZero() {
		r.unsettled = time.Now()
	}
	if time.Since(r.unsettled) >= unsettledMax {
		r.log.Warn().Str(logkey.Trigger, a.trigger).Str(logkey.Policy, r.file).
			Msg("policy files kept changing; loading them as they are")
		return false
	}
	r.log.Debug().Str(logkey.Trigger, a.trigger).
		Msg("policy files are being written; waiting for them to settle")
	r.pending = &a
	r.settle.Reset(settleDelay)
	return true
}

// apply swaps p in, unless diags has errors or, when a is not forced,
// p's digest equals the running one's. It returns the generation running
// afterwards, or why the reload was rejected.
func (r *Reloader) apply(a attempt, p *policy.Policy, diags hcl.Diagnostics) (uint64, error) {
	LogDiagnostics(r.log, r.file, diags)
	gen, cur := r.srv.Generation()
	if diags.HasErrors() {
		r.log.Error().Str(logkey.Trigger, a.trigger).Uint64(logkey.Generation, gen).
			Str(logkey.Policy, r.file).
			Msg("reload rejected: policy has errors; the running policy stays")
		r.observe(false)
		return gen, errors.New(strings.TrimSpace(policy.FormatDiagnostics(errorsOnly(diags))))
	}
	if !a.force && p.Digest == r.digest {
		r.log.Debug().Str(logkey.Trigger, a.trigger).Msg("policy files unchanged; nothing to reload")
		return gen, nil
	}
	changes := policy.Diff(cur, p)
	next, err := r.srv.Apply(p)
	if err != nil {
		r.rejected(a, gen, err)
		return gen, err
	}
	r.digest, r.running = p.Digest, p.Files
	r.applied(a, next, changes)
	return next, nil
}

// rejected logs a policy that could not be applied. A port that cannot
// be bound is a diagnostic at the port in the policy, logged once: the
// rejection line that follows does not repeat it, as for other policy
// errors.
func (r *Reloader) rejected(a attempt, gen uint64, err error) {
	ev := r.log.Error()
	var be *proxy.BindError
	if errors.As(err, &be) {
		LogDiagnostics(r.log, r.file, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot listen",
			Detail:   be.Detail(),
			Subject:  &be.Listener.PortRange,
		}})
	} else {
		ev = ev.Err(err)
	}
	ev.Str(logkey.Trigger, a.trigger).Str(logkey.Policy, r.file).
		Uint64(logkey.Generation, gen).Msg("reload rejected; the running policy stays")
	r.observe(false)
}

// applied logs a reload that took: its generation and what changed.
func (r *Reloader) applied(a attempt, gen uint64, changes policy.Changes) {
	msg := "policy reloaded"
	if changes.Empty() {
		msg = "policy reloaded; nothing changed"
	}
	r.log.Info().Str(logkey.Trigger, a.trigger).Uint64(logkey.Generation, gen).
		Str(logkey.Policy, r.file).
		Strs(logkey.Added, changes.Added).Strs(logkey.Removed, changes.Removed).
		Strs(logkey.Changed, changes.Changed).Strs(logkey.Rotated, changes.Rotated).
		Strs(logkey.Listeners, r.srv.Addrs()).Msg(msg)
	r.observe(true)
}

// errorsOnly keeps the errors of diags.
func errorsOnly(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

func (r *Reloader) observe(applied bool) {
	if r.OnReload != nil {
		r.OnReload(applied)
	}
}

// LogDiagnostics logs each policy problem as its file:line:col line, at
// error or warn level by severity.
func LogDiagnostics(log zerolog.Logger, file string, diags hcl.Diagnostics) {
	for _, d := range diags {
		ev := log.Warn()
		if d.Severity == hcl.DiagError {
			ev = log.Error()
		}
		line := strings.TrimRight(policy.FormatDiagnostics(hcl.Diagnostics{d}), "\n")
		ev.Str(logkey.Policy, file).Msg(line)
	}
}
