package policy

import (
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// policySchema lists the blocks of a policy file. Outbound rules are not
// part of the language yet, so HCL reports them as unsupported.
var policySchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "environment", LabelNames: []string{"name"}},
		{Type: "inbound", LabelNames: []string{"name"}},
	},
}

// Load reads and validates the policy file at path. Relative paths inside
// the policy resolve against the file's folder. The policy is nil when
// diags has errors; warnings may come with a usable policy.
func Load(path string) (*Policy, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read policy",
			Detail:   err.Error(),
			Subject:  fileRange(path),
		}}
	}
	dir := filepath.Dir(path)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return Parse(src, path, dir)
}

// Parse validates a policy held in src. Diagnostics name filename, and
// relative paths inside the policy resolve against baseDir. The policy is
// nil when diags has errors. Diagnostics are in source order.
func Parse(src []byte, filename, baseDir string) (*Policy, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		// A broken syntax tree would only add confusing follow-on errors.
		return nil, sortDiagnostics(diags)
	}
	d := &decoder{filename: filename, baseDir: baseDir, diags: diags}
	p := d.policy(file.Body)
	d.diags = sortDiagnostics(d.diags)
	if d.diags.HasErrors() {
		return nil, d.diags
	}
	p.File = filename
	if abs, err := filepath.Abs(filename); err == nil {
		p.File = abs
	}
	return p, d.diags
}

// policy decodes the top-level body: environments first, since rules
// refer to them, then rules, then the listeners the rules need.
func (d *decoder) policy(body hcl.Body) *Policy {
	content, diags := body.Content(policySchema)
	d.diags = append(d.diags, diags...)

	p := &Policy{}
	envs := d.environments(content.Blocks.OfType("environment"), p)
	rules, order := d.inbounds(content.Blocks.OfType("inbound"), envs)
	if len(content.Blocks.OfType("inbound")) == 0 {
		d.add(hcl.DiagError, *fileRange(d.filename), "Policy has no rules",
			"add an inbound block; with no rule attlsd would refuse every connection")
	}
	sortRules(rules)
	p.Listeners = d.listen(rules, order)
	for _, src := range rules {
		p.Inbound = append(p.Inbound, src.rule)
	}
	if !d.diags.HasErrors() {
		buildConfigs(rules)
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

// inbounds decodes every inbound block and returns the rules with their
// position in the file. A duplicate name is reported and left out.
func (d *decoder) inbounds(blocks hcl.Blocks, envs map[string]*envSource) (
	[]*ruleSource, map[*ruleSource]int) {
	var rules []*ruleSource
	order := map[*ruleSource]int{}
	byName := map[string]*ruleSource{}
	for i, b := range blocks {
		src := d.inbound(b, envs)
		if first := byName[src.rule.Name]; first != nil {
			d.duplicate(b, first.block)
			continue
		}
		byName[src.rule.Name] = src
		order[src] = i
		rules = append(rules, src)
	}
	return rules, order
}

// duplicate reports a block whose name an earlier block already took.
func (d *decoder) duplicate(second, first *hcl.Block) {
	kind := second.Type
	if kind == "inbound" {
		kind = "rule"
	}
	d.errorf(second.LabelRanges[0], "Duplicate "+kind+" name",
		"%s %q is already defined at line %d", kind, second.Labels[0],
		first.DefRange.Start.Line)
}

// buildConfigs gives every TLS rule its server configuration.
func buildConfigs(rules []*ruleSource) {
	for _, src := range rules {
		if src.rule.TLS {
			src.rule.TLSConfig = serverConfig(src.rule)
		}
	}
}
