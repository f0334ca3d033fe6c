package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/hashicorp/hcl/v2"

	"github.com/attlsd/attlsd/certs"
)

// environmentSchema lists what an environment block may say.
var environmentSchema = &hcl.BodySchema{
	Attributes: withNotEmulated(
		hcl.AttributeSchema{Name: "certificate"},
		hcl.AttributeSchema{Name: "private_key"},
		hcl.AttributeSchema{Name: "trust"},
		hcl.AttributeSchema{Name: "tls_versions"},
		hcl.AttributeSchema{Name: "cipher_suites"},
		hcl.AttributeSchema{Name: "curves"},
		hcl.AttributeSchema{Name: "alpn"},
		hcl.AttributeSchema{Name: "handshake_timeout"},
	),
}

// envSource is a decoded environment with the block it came from, which
// later checks point into.
type envSource struct {
	env   *Environment
	block *hcl.Block
	attrs hcl.Attributes
}

// hasCertificate reports whether the block names a certificate.
func (s *envSource) hasCertificate() bool { return s.attrs["certificate"] != nil }

// hasTrust reports whether the block names CA bundles to verify peers,
// loadable or not, so that a broken trust is reported only once.
func (s *envSource) hasTrust() bool {
	attr := s.attrs["trust"]
	if attr == nil {
		return false
	}
	return !isEmptyList(attr)
}

// environment decodes one environment block.
func (d *decoder) environment(block *hcl.Block) *envSource {
	content, diags := block.Body.Content(environmentSchema)
	d.diags = append(d.diags, diags...)
	a := content.Attributes
	d.notEmulated(a)
	d.checkName(block)

	env := &Environment{
		Name:             block.Labels[0],
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		HandshakeTimeout: DefaultHandshakeTimeout,
	}
	d.keyPair(env, a["certificate"], a["private_key"])
	d.trust(env, a["trust"])
	d.tlsVersions(env, a["tls_versions"])
	env.CipherSuites = d.cipherSuites(a["cipher_suites"], env.MinVersion)
	env.Curves = d.curves(a["curves"])
	env.ALPN = d.alpn(a["alpn"])
	env.HandshakeTimeout = d.duration(a["handshake_timeout"], DefaultHandshakeTimeout, "")

	return &envSource{env: env, block: block, attrs: a}
}

// keyPair loads the certificate and its key, which come together or not
// at all. Key problems point at private_key, the rest at certificate.
func (d *decoder) keyPair(env *Environment, certAttr, keyAttr *hcl.Attribute) {
	switch {
	case certAttr == nil && keyAttr == nil:
		return
	case keyAttr == nil:
		d.errorf(certAttr.NameRange, "Incomplete key pair",
			"certificate needs private_key in the same environment")
		return
	case certAttr == nil:
		d.errorf(keyAttr.NameRange, "Incomplete key pair",
			"private_key needs certificate in the same environment")
		return
	}
	certFile, okCert := d.path(certAttr)
	keyFile, okKey := d.path(keyAttr)
	if !okCert || !okKey {
		return
	}
	env.CertFile, env.KeyFile = certFile, keyFile
	d.files = append(d.files, certFile, keyFile)
	d.loadPair(env, certAttr, keyAttr)
}

// loadPair reads the environment's files and warns about a key that
// others can read.
func (d *decoder) loadPair(env *Environment, certAttr, keyAttr *hcl.Attribute) {
	pair, err := certs.LoadPair(env.CertFile, env.KeyFile)
	var keyErr *certs.KeyError
	switch {
	case errors.As(err, &keyErr):
		d.errorf(keyAttr.Expr.Range(), "Cannot load private key", "%v", err)
		return
	case err != nil:
		d.errorf(certAttr.Expr.Range(), "Cannot load certificate", "%v", err)
		return
	}
	env.Pair = pair
	d.validity(pair.Leaf, env.CertFile, certAttr)
	if err := certs.KeyModeProblem(env.KeyFile); err != nil {
		d.warnf(keyAttr.Expr.Range(), "Private key mode", "%v", err)
	}
}

// trust loads the CA bundles, pointing at the entry that fails. A
// certificate found more than once is kept once, in its first place.
func (d *decoder) trust(env *Environment, attr *hcl.Attribute) {
	if attr == nil {
		return
	}
	items, _ := d.list(attr)
	pool := x509.NewCertPool()
	seen := map[[sha256.Size]byte]bool{}
	ok := true
	for _, it := range d.unique(attr, items) {
		file := d.resolve(it.s)
		d.files = append(d.files, file)
		env.TrustFiles = append(env.TrustFiles, file)
		chain, err := certs.ReadCerts(file)
		if err != nil {
			d.errorf(it.rng, "Cannot load trust", "%v", err)
			ok = false
			continue
		}
		for _, c := range chain {
			// A CA often comes twice: on its own and inside a bundle.
			if sum := sha256.Sum256(c.Raw); !seen[sum] {
				seen[sum] = true
				pool.AddCert(c)
				env.trusted = append(env.trusted, c)
			}
		}
	}
	if ok && len(env.TrustFiles) > 0 {
		env.Trust = pool
	}
}
