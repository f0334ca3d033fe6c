package policy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/attlsd/attlsd/internal/smallfile"
)

// policySchema lists the blocks of a policy file.
var policySchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "environment", LabelNames: []string{"name"}},
		{Type: "inbound", LabelNames: []string{"name"}},
		{Type: "outbound", LabelNames: []string{"name"}},
		{Type: "intercept", LabelNames: []string{"name"}},
	},
}

// Load reads and validates the policy file at path. Relative paths inside
// the policy resolve against the file's folder. The policy is nil when
// diags has errors; warnings may come with a usable policy.
func Load(path string) (*Policy, hcl.Diagnostics) {
	p, _, diags := LoadFiles(path)
	return p, diags
}

// LoadFiles is Load that also returns the files the policy names, the
// policy file first, also when it has errors: a reload watcher must see a
// missing certificate appear.
func LoadFiles(path string) (*Policy, []string, hcl.Diagnostics) {
	file := path
	if abs, err := filepath.Abs(path); err == nil {
		file = abs
	}
	src, err := smallfile.Read(path)
	if err != nil {
		return nil, []string{file}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read policy",
			Detail:   err.Error(),
			Subject:  fileRange(path),
		}}
	}
	p, files, diags := parse(src, path, filepath.Dir(file))
	files = append([]string{file}, files...)
	if p != nil {
		p.Files = files
	}
	return p, files, diags
}

// Parse validates a policy held in src. Diagnostics name filename, and
// relative paths inside the policy resolve against baseDir. The policy is
// nil when diags has errors. Diagnostics are in source order.
func Parse(src []byte, filename, baseDir string) (*Policy, hcl.Diagnostics) {
	p, _, diags := parse(src, filename, baseDir)
	return p, diags
}

func parse(src []byte, filename, baseDir string) (*Policy, []string, hcl.Diagnostics) {
	if d := checkUTF8(src, filename); d != nil {
		return nil, nil, hcl.Diagnostics{d}
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if !soundTree(diags) {
		// A broken syntax tree would only add confusing follow-on errors.
		return nil, nil, sortDiagnostics(diags)
	}
	d := &decoder{filename: filename, baseDir: baseDir, diags: diags, now: time.Now()}
	p := d.policy(file.Body)
	d.diags = sortDiagnostics(d.diags)
	if d.diags.HasErrors() {
		return nil, d.files, d.diags
	}
	p.File = filename
	if abs, err := filepath.Abs(filename); err == nil {
		p.File = abs
	}
	p.Files = d.files
	p.Digest = policyDigest(src, p.Environments)
	return p, d.files, d.diags
}

// checkUTF8 reports the first byte of src that is not UTF-8. HCL source
// must be UTF-8, and the parser miscounts lines and columns past an
// invalid sequence, so such a file is refused before parsing, at the
// right place.
func checkUTF8(src []byte, filename string) *hcl.Diagnostic {
	if utf8.Valid(src) {
		return nil
	}
	off := 0 // of the first byte that starts no character; src has one
	for {
		r, n := utf8.DecodeRune(src[off:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		off += n
	}
	before := src[:off]
	line := before[bytes.LastIndexByte(before, '\n')+1:]
	pos := hcl.Pos{Byte: off, Line: 1 + bytes.Count(before, []byte("\n")),
		Column: 1 + utf8.RuneCount(line)}
	end := hcl.Pos{Byte: off + 1, Line: pos.Line, Column: pos.Column + 1}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Invalid UTF-8",
		Detail:   fmt.Sprintf("byte 0x%02x is not part of a UTF-8 character; policy files must be UTF-8", src[off]),
		Subject:  &hcl.Range{Filename: filename, Start: pos, End: end},
	}
}

// redefined is the summary of hclsyntax's error for an attribute set
// twice in one body. The parser keeps the first definition and the rest
// of the tree intact, so decoding goes on and reports every other mistake
// too. hcl has no typed error for it; testdata/attribute_redefined
// notices if the wording changes.
const redefined = "Attribute redefined"

// soundTree reports whether the syntax tree that came with diags can be
// decoded: no error at all, or only attributes set twice.
func soundTree(diags hcl.Diagnostics) bool {
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary != redefined {
			return false
		}
	}
	return true
}

// policy decodes the top-level body: environments first, since rules
// refer to them, then rules and intercepts, then the listeners they need.
func (d *decoder) policy(body hcl.Body) *Policy {
	content, diags := body.Content(policySchema)
	d.diags = append(d.diags, diags...)

	p := &Policy{}
	envs := d.environments(content.Blocks.OfType("environment"), p)
	rules := d.rules(content.Blocks, envs)
	intercepts := d.intercepts(content.Blocks.OfType("intercept"))
	d.checkNoRules(content.Blocks)
	d.checkIntercepts(rules, intercepts)

	sortRules(rules)
	p.Listeners = d.listen(binders(rules, intercepts))
	d.reportHiddenTransparent(rules)
	p.Inbound, p.Outbound, p.Transparent = byDirection(rules)
	if !d.diags.HasErrors() {
		for _, env := range p.Environments {
			env.Digest = envDigest(env)
		}
		buildConfigs(p, rules)
	}
	return p
}

// environments decodes every environment block, in file order, into p
// and returns them by name. A duplicate name is reported and left out.
func (d *decoder) environments(blocks hcl.Blocks, p *Policy) map[string]*envSource {
	envs := map[string]*envSource{}
	for _, b := range blocks {
		es := d.environment(b)
		if first := envs[es.env.Name]; first != nil {
			d.duplicate(b, first.block)
			continue
		}
		envs[es.env.Name] = es
		p.Environments = append(p.Environments, es.env)
	}
	return envs
}

// rules decodes every inbound and outbound block, in file order. Rule
// names are one namespace, as in AT-TLS: a duplicate name is reported and
// left out.
func (d *decoder) rules(blocks hcl.Blocks, envs map[string]*envSource) []*ruleSource {
	var rules []*ruleSource
	byName := map[string]*ruleSource{}
	for _, b := range blocks {
		var src *ruleSource
		switch b.Type {
		case "inbound":
			src = d.inbound(b, envs)
		case "outbound":
			src = d.outbound(b, envs)
		default:
			continue
		}
		if first := byName[src.rule.Name]; first != nil {
			d.duplicate(b, first.block)
			continue
		}
		byName[src.rule.Name] = src
		rules = append(rules, src)
	}
	return rules
}

// checkNoRules refuses a policy without rules, which would refuse every
// connection.
func (d *decoder) checkNoRules(blocks hcl.Blocks) {
	if len(blocks.OfType("inbound")) > 0 || len(blocks.OfType("outbound")) > 0 {
		return
	}
	d.add(hcl.DiagError, *fileRange(d.filename), "Policy has no rules",
		"add an inbound or outbound block; with no rule attlsd would refuse "+
			"every connection")
}

// duplicate reports a block whose name an earlier block already took.
func (d *decoder) duplicate(second, first *hcl.Block) {
	kind := second.Type
	if kind == "inbound" || kind == "outbound" {
		kind = "rule"
	}
	detail := ""
	if second.Type != first.Type {
		detail = "; inbound and outbound rules share one namespace"
	}
	d.errorf(second.LabelRanges[0], "Duplicate "+kind+" name",
		"%s %q is already defined at line %d%s", kind, second.Labels[0],
		first.DefRange.Start.Line, detail)
}

// byDirection splits rules in match order into inbound, outbound and,
// among the outbound, transparent rules, keeping the order.
func byDirection(rules []*ruleSource) (inbound, outbound, transparent []*Rule) {
	for _, src := range rules {
		switch {
		case src.rule.Direction == Inbound:
			inbound = append(inbound, src.rule)
		case src.transparent:
			transparent = append(transparent, src.rule)
			fallthrough
		default:
			outbound = append(outbound, src.rule)
		}
	}
	return inbound, outbound, transparent
}

// buildConfigs gives every TLS rule its configuration: a server one
// inbound, a client one outbound. Rules whose configurations would be
// equal share one (see tlsKey), and with it session ticket keys or a
// client session cache.
func buildConfigs(p *Policy, rules []*ruleSource) {
	p.configs = map[[32]byte]*tls.Config{}
	for _, src := range rules {
		r := src.rule
		r.digest = ruleDigest(r)
		if r.Direction == Inbound && !r.TLS {
			continue
		}
		r.configKey = tlsKey(r)
		if c := p.configs[r.configKey]; c != nil {
			r.TLSConfig = c
			continue
		}
		if r.Direction == Outbound {
			r.TLSConfig = clientConfig(r)
		} else {
			r.TLSConfig = serverConfig(r)
		}
		p.configs[r.configKey] = r.TLSConfig
	}
}
