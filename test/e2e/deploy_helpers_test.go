package e2e

import (
	"bytes"
	"crypto/tls"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deployment examples, relative to the repository root.
const (
	k8sExampleDir  = "examples/kubernetes"
	unitExample    = "examples/systemd/attlsd.service"
	dockerfilePath = "Dockerfile"
	dockerignore   = ".dockerignore"
)

// deployFile is the path of a file of the repository.
func deployFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// deployDir makes a temporary folder that other users can enter, for a
// daemon that runs as an unprivileged user (t.TempDir's parent is private
// to the test's user). It is removed when the test ends.
func deployDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "attlsd-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExecutable copies the binary src into dir, mode 0755, and returns
// the copy's path.
func copyExecutable(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// readDevFile reads a file of the development PKI made by TestMain.
func readDevFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(certDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---- Kubernetes manifests ----

// The Kubernetes objects the examples use, with only the fields they set.
// They are decoded strictly: a field the examples misspell, or one added
// without being modelled here, fails the test rather than being ignored
// as it would be by a lenient reader (the API server rejects it).

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// k8sIntOrString is a port given by number or by name.
type k8sIntOrString string

// UnmarshalYAML takes the scalar as written, number or name.
func (v *k8sIntOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a name", n.Line)
	}
	*v = k8sIntOrString(n.Value)
	return nil
}

type k8sDeployment struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		Replicas int         `yaml:"replicas"`
		Selector k8sSelector `yaml:"selector"`
		Template struct {
			Metadata k8sMeta    `yaml:"metadata"`
			Spec     k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
		Sysctls []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"sysctls"`
	} `yaml:"securityContext"`
	// InitContainers holds the native sidecars: init containers with
	// restartPolicy Always, which keep running beside the others.
	InitContainers []k8sContainer `yaml:"initContainers"`
	Containers     []k8sContainer `yaml:"containers"`
	Volumes        []k8sVolume    `yaml:"volumes"`
}

// all returns the pod's init containers, then its containers.
func (p *k8sPodSpec) all() []*k8sContainer {
	var out []*k8sContainer
	for i := range p.InitContainers {
		out = append(out, &p.InitContainers[i])
	}
	for i := range p.Containers {
		out = append(out, &p.Containers[i])
	}
	return out
}

// sidecar reports whether c, one of p's containers, is a native sidecar.
func (p *k8sPodSpec) sidecar(c *k8sContainer) bool {
	return c.RestartPolicy == "Always" && slices.ContainsFunc(p.InitContainers,
		func(ic k8sContainer) bool { return ic.Name == c.Name })
}

type k8sContainer struct {
	Name string `yaml:"name"`
	// RestartPolicy "Always" on an init container makes it a native
	// sidecar.
	RestartPolicy string   `yaml:"restartPolicy"`
	Image         string   `yaml:"image"`
	Command       []string `yaml:"command"`
	Args          []string `yaml:"args"`
	Ports         []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		Capabilities             *struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path   string         `yaml:"path"`
		Port   k8sIntOrString `yaml:"port"`
		Scheme string         `yaml:"scheme"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
	SuccessThreshold    int `yaml:"successThreshold"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name        string `yaml:"name"`
		DefaultMode *int   `yaml:"defaultMode"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		DefaultMode *int   `yaml:"defaultMode"`
	} `yaml:"secret"`
}

type k8sService struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string         `yaml:"name"`
			Port       int            `yaml:"port"`
			TargetPort k8sIntOrString `yaml:"targetPort"`
			Protocol   string         `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sConfigMap struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
}

type k8sPDB struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		MaxUnavailable *k8sIntOrString `yaml:"maxUnavailable"`
		MinAvailable   *k8sIntOrString `yaml:"minAvailable"`
		Selector       k8sSelector     `yaml:"selector"`
	} `yaml:"spec"`
}

type k8sNetworkPolicy struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		PodSelector k8sSelector `yaml:"podSelector"`
		PolicyTypes []string    `yaml:"policyTypes"`
		Ingress     []struct {
			From  []map[string]any `yaml:"from"`
			Ports []struct {
				Port     k8sIntOrString `yaml:"port"`
				Protocol string         `yaml:"protocol"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

type k8sCertificate struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		SecretName  string   `yaml:"secretName"`
		DNSNames    []string `yaml:"dnsNames"`
		Duration    string   `yaml:"duration"`
		RenewBefore string   `yaml:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `yaml:"algorithm"`
			Size           int    `yaml:"size"`
			Encoding       string `yaml:"encoding"`
			RotationPolicy string `yaml:"rotationPolicy"`
		} `yaml:"privateKey"`
		Usages    []string `yaml:"usages"`
		IssuerRef struct {
			Name  string `yaml:"name"`
			Kind  string `yaml:"kind"`
			Group string `yaml:"group"`
		} `yaml:"issuerRef"`
	} `yaml:"spec"`
}

type k8sKustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
}

// k8sManifests is every object of examples/kubernetes, by kind, and the
// file each came from.
type k8sManifests struct {
	dir           string
	deployment    *k8sDeployment
	service       *k8sService
	configMap     *k8sConfigMap
	pdb           *k8sPDB
	networkPolicy *k8sNetworkPolicy
	certificate   *k8sCertificate
	kustomization *k8sKustomization
	files         map[string]string // kind to file name
}

// loadK8sManifests reads every YAML file of dir: one object each, of a
// kind the examples use at most once.
func loadK8sManifests(t *testing.T, dir string) *k8sManifests {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no YAML files in %s (%v)", dir, err)
	}
	m := &k8sManifests{dir: dir, files: map[string]string{}}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		kind := k8sKind(t, name, b)
		if prev, ok := m.files[kind]; ok {
			t.Fatalf("%s: a second %s (the first is in %s)", name, kind, prev)
		}
		m.files[kind] = filepath.Base(name)
		m.decode(t, name, kind, b)
	}
	return m
}

// k8sKind reads the kind of the single object in a file.
func k8sKind(t *testing.T, name string, b []byte) string {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var head struct {
		Kind string `yaml:"kind"`
	}
	if err := dec.Decode(&head); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: want one object per file, found more", name)
	}
	return head.Kind
}

func (m *k8sManifests) decode(t *testing.T, name, kind string, b []byte) {
	t.Helper()
	var v any
	switch kind {
	case "Deployment":
		m.deployment = new(k8sDeployment)
		v = m.deployment
	case "Service":
		m.service = new(k8sService)
		v = m.service
	case "ConfigMap":
		m.configMap = new(k8sConfigMap)
		v = m.configMap
	case "PodDisruptionBudget":
		m.pdb = new(k8sPDB)
		v = m.pdb
	case "NetworkPolicy":
		m.networkPolicy = new(k8sNetworkPolicy)
		v = m.networkPolicy
	case "Certificate":
		m.certificate = new(k8sCertificate)
		v = m.certificate
	case "Kustomization":
		m.kustomization = new(k8sKustomization)
		v = m.kustomization
	default:
		t.Fatalf("%s: kind %q is not modelled by the test; add it to deploy_helpers_test.go", name, kind)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// container returns the pod's container, init container included, with
// that name, or fails.
func (m *k8sManifests) container(t *testing.T, name string) *k8sContainer {
	t.Helper()
	for _, c := range m.deployment.Spec.Template.Spec.all() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s: no container named %q", m.files["Deployment"], name)
	return nil
}

// volume returns the pod volume with that name, or fails.
func (m *k8sManifests) volume(t *testing.T, name string) *k8sVolume {
	t.Helper()
	for i, v := range m.deployment.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &m.deployment.Spec.Template.Spec.Volumes[i]
		}
	}
	t.Fatalf("%s: no volume named %q", m.files["Deployment"], name)
	return nil
}

// containerPort resolves a port given by name or number against c's
// declared ports; ok is false when c declares no such port.
func (c *k8sContainer) containerPort(p k8sIntOrString) (int, bool) {
	for _, cp := range c.Ports {
		if cp.Name == string(p) || strconv.Itoa(cp.ContainerPort) == string(p) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// argFlag returns the value of --name in args (as "--name=v" or "--name v").
func argFlag(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, dash := range []string{"-", "--"} {
			if v, ok := strings.CutPrefix(a, dash+name+"="); ok {
				return v, true
			}
			if a == dash+name && i+1 < len(args) {
				return args[i+1], true
			}
		}
	}
	return "", false
}

// drainTimeoutOf is the --drain-timeout in args, or attlsd's default.
func drainTimeoutOf(t *testing.T, args []string) time.Duration {
	t.Helper()
	v, ok := argFlag(args, "drain-timeout")
	if !ok {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("--drain-timeout %q: %v", v, err)
	}
	return d
}

// ---- the kubelet's volume layout ----

// kubeletVolume lays out a ConfigMap or Secret volume as the kubelet
// does: the files in a timestamped folder, "..data" a link to it, and
// each key a link to "..data/KEY". An update writes a new folder, points
// "..data_tmp" at it, renames that over "..data" (one atomic swap) and
// removes the old folder.
type kubeletVolume struct {
	dir  string
	mode os.FileMode // the volume's defaultMode
	gid  int         // the pod's fsGroup, or -1
}

func newKubeletVolume(t *testing.T, dir string, mode os.FileMode, gid int,
	files map[string][]byte) *kubeletVolume {
	t.Helper()
	v := &kubeletVolume{dir: dir, mode: mode, gid: gid}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v.chown(t, dir)
	stamp := v.stamp(t, files)
	if err := os.Symlink(stamp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	v.link(t, files)
	return v
}

// update swaps in a new version of every file.
func (v *kubeletVolume) update(t *testing.T, files map[string][]byte) {
	t.Helper()
	data := filepath.Join(v.dir, "..data")
	old, err := os.Readlink(data)
	if err != nil {
		t.Fatal(err)
	}
	stamp := v.stamp(t, files)
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	v.link(t, files)
	if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
		t.Fatal(err)
	}
}

// stamp writes files into a new "..YYYY_MM_DD_hh_mm_ss.N" folder and
// returns its name.
func (v *kubeletVolume) stamp(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir, err := os.MkdirTemp(v.dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v.chown(t, dir)
	for name, b := range files {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, v.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, v.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		v.chown(t, f)
	}
	return filepath.Base(dir)
}

// link makes the per-key links that do not exist yet.
func (v *kubeletVolume) link(t *testing.T, files map[string][]byte) {
	t.Helper()
	for name := range files {
		l := filepath.Join(v.dir, name)
		if _, err := os.Lstat(l); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), l); err != nil {
			t.Fatal(err)
		}
	}
}

// chown gives path the fsGroup, as the kubelet does.
func (v *kubeletVolume) chown(t *testing.T, path string) {
	t.Helper()
	if v.gid < 0 {
		return
	}
	if err := os.Lchown(path, -1, v.gid); err != nil {
		t.Fatal(err)
	}
}

// ---- certificates ----

// servedSerial completes a handshake with addr as a client of the
// development CA asking for "localhost", and returns the serial number
// of the certificate served.
func servedSerial(t *testing.T, addr string) (*big.Int, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, clientTLS(t))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// ---- HTTP ----

// deployGet fetches u and returns the status and body.
func deployGet(u string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitStatus polls u until it answers want, for up to timeout, and
// returns the last body.
func waitStatus(t *testing.T, u string, want int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := deployGet(u)
		if err == nil && code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: got %d %q (%v), want %d within %s", u, code, body, err, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// demoReply is the part of the demo backend's answer the tests read.
type demoReply struct {
	ProxyHeader bool   `json:"proxy_header"`
	Client      string `json:"client"`
	Destination string `json:"destination"`
	Rule        string `json:"rule"`
	TLS         bool   `json:"tls"`
}

func parseDemoReply(t *testing.T, body string) demoReply {
	t.Helper()
	var r demoReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("demo backend reply %q: %v", body, err)
	}
	return r
}

// ---- Dockerfile ----

// dockerStage is one FROM of a Dockerfile and the instructions under it.
type dockerStage struct {
	image  string // as written, ARGs expanded
	name   string // the AS name, or ""
	args   map[string]string
	instrs []dockerInstr
}

type dockerInstr struct {
	cmd  string // upper case
	rest string
	line int
}

// dockerfile is a parsed Dockerfile: the ARGs before the first FROM and
// the stages.
type dockerfile struct {
	globalArgs map[string]string
	stages     []*dockerStage
}

// parseDockerfile reads the instructions of path: continuation lines
// joined, comments dropped. overrides plays the part of --build-arg and
// of the platform ARGs that BuildKit predefines.
func parseDockerfile(t *testing.T, path string, overrides map[string]string) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := &dockerfile{globalArgs: map[string]string{}}
	for _, in := range dockerInstructions(string(b)) {
		st := df.last()
		switch in.cmd {
		case "ARG":
			name, def, hasDef := strings.Cut(in.rest, "=")
			name = strings.TrimSpace(name)
			val, ok := overrides[name]
			if !ok && hasDef {
				val = strings.Trim(strings.TrimSpace(def), `"`)
			} else if !ok && st != nil {
				val = df.globalArgs[name] // a global ARG declared again
			}
			if st == nil {
				df.globalArgs[name] = val
			} else {
				st.args[name] = val
			}
		case "FROM":
			f := strings.Fields(in.rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				t.Fatalf("%s:%d: FROM without an image", path, in.line)
			}
			s := &dockerStage{image: expandVars(f[0], df.globalArgs), args: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			df.stages = append(df.stages, s)
		default:
			if st == nil {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
			}
			st.instrs = append(st.instrs, in)
		}
	}
	if len(df.stages) == 0 {
		t.Fatalf("%s: no FROM", path)
	}
	return df
}

func (df *dockerfile) last() *dockerStage {
	if len(df.stages) == 0 {
		return nil
	}
	return df.stages[len(df.stages)-1]
}

// stage returns the stage named name, or nil.
func (df *dockerfile) stage(name string) *dockerStage {
	for _, s := range df.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// all returns the instructions of stage s with that command.
func (s *dockerStage) all(cmd string) []dockerInstr {
	var out []dockerInstr
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// dockerInstructions splits a Dockerfile into instructions.
func dockerInstructions(text string) []dockerInstr {
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, rest, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstr{cmd: strings.ToUpper(cmd),
			rest: strings.TrimSpace(rest), line: start})
		cur.Reset()
	}
	return out
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// expandVars replaces $NAME and ${NAME} with their values; an unknown
// name becomes empty, as in a Dockerfile.
func expandVars(s string, vars map[string]string) string {
	return varRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		return vars[sub[1]+sub[2]]
	})
}

// shellWords splits a shell command line into words, with single and
// double quotes and $ expansion from vars (none when vars is nil, as in
// a systemd Exec line, where systemd itself expands $MAINPID). "&&" and
// ";" are words of their own.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			flush()
		case c == ';':
			flush()
			words = append(words, ";")
		case c == '&' && i+1 < len(s) && s[i+1] == '&':
			flush()
			words = append(words, "&&")
			i++
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+end])
			inWord = true
			i += end + 1
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
			w.WriteString(expandIf(s[i+1:i+1+end], vars))
			inWord = true
			i += end + 1
		case c == '$' && vars != nil:
			loc := varRE.FindStringIndex(s[i:])
			if loc == nil || loc[0] != 0 {
				w.WriteByte(c)
			} else {
				w.WriteString(expandVars(s[i:i+loc[1]], vars))
				i += loc[1] - 1
			}
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, nil
}

// expandIf is expandVars, or s as it is when vars is nil.
func expandIf(s string, vars map[string]string) string {
	if vars == nil {
		return s
	}
	return expandVars(s, vars)
}

// goBuildStep is the "go build" command of a RUN instruction: the
// environment set on its command line and the arguments after "go".
type goBuildStep struct {
	env  []string
	args []string
}

// findGoBuild returns the go build command of stage s, with the stage's
// ARGs expanded.
func findGoBuild(t *testing.T, s *dockerStage) goBuildStep {
	t.Helper()
	for _, in := range s.all("RUN") {
		rest := in.rest
		for strings.HasPrefix(rest, "--") { // --mount=..., --network=...
			_, rest, _ = strings.Cut(rest, " ")
			rest = strings.TrimSpace(rest)
		}
		words, err := shellWords(rest, s.args)
		if err != nil {
			t.Fatalf("Dockerfile:%d: %v", in.line, err)
		}
		for _, cmd := range splitWords(words) {
			var step goBuildStep
			for len(cmd) > 0 && strings.Contains(cmd[0], "=") {
				step.env = append(step.env, cmd[0])
				cmd = cmd[1:]
			}
			if len(cmd) >= 2 && cmd[0] == "go" && cmd[1] == "build" {
				step.args = cmd[1:]
				return step
			}
		}
	}
	t.Fatalf("Dockerfile: no \"go build\" in stage %q", s.name)
	return goBuildStep{}
}

// splitWords cuts a command line at "&&" and ";".
func splitWords(words []string) [][]string {
	var out [][]string
	var cur []string
	for _, w := range words {
		if w == "&&" || w == ";" {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	return append(out, cur)
}

// ---- .dockerignore ----

// dockerIgnore holds the patterns of a .dockerignore file.
type dockerIgnore []string

func readDockerIgnore(t *testing.T, path string) dockerIgnore {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pats dockerIgnore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pats = append(pats, line)
	}
	return pats
}

// ignored reports whether the build context leaves path (relative, with
// slashes) out: the last pattern that matches it or a folder above it
// decides, "!" patterns putting it back.
func (d dockerIgnore) ignored(path string) bool {
	out := false
	for _, p := range d {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		re := globRE(filepath.ToSlash(filepath.Clean(p)))
		for q := path; q != "." && q != "/"; q = filepath.Dir(q) {
			if re.MatchString(q) {
				out = !neg
				break
			}
		}
	}
	return out
}

// globRE turns a .dockerignore pattern into a regular expression: "**"
// spans folders, "*" and "?" do not.
func globRE(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// ---- ELF ----

// checkStatic fails the test unless bin is a statically linked ELF
// executable, stripped of its symbol table.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has a PT_INTERP program header: dynamically linked, needs a loader the image lacks", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s: needs shared libraries %v (%v), want none", bin, libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s: has a symbol table; -ldflags \"-s\" should have stripped it", bin)
	}
}

// ---- systemd units ----

// unitLine is one "Key=value" line of a unit file.
type unitLine struct {
	section, key, value string
	line                int
}

// systemdUnit is a unit file's settings in order.
type systemdUnit []unitLine

// parseUnit reads a unit file: sections, settings, comments and
// backslash continuations.
func parseUnit(t *testing.T, text string) systemdUnit {
	t.Helper()
	var u systemdUnit
	section := ""
	var cont strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if cont.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cont.WriteString(body + " ")
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %d: %q is not Key=value", start, line)
		}
		u = append(u, unitLine{section, strings.TrimSpace(k), strings.TrimSpace(v), start})
	}
	return u
}

// values returns every value of section.key in order.
func (u systemdUnit) values(section, key string) []string {
	var out []string
	for _, l := range u {
		if l.section == section && l.key == key {
			out = append(out, l.value)
		}
	}
	return out
}

// value returns the last value of section.key, as systemd applies it.
func (u systemdUnit) value(section, key string) string {
	vs := u.values(section, key)
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// capSet is the set a list setting such as CapabilityBoundingSet= ends
// up with: each line adds its items, an empty line clears the set.
func (u systemdUnit) capSet(key string) []string {
	var set []string
	for _, v := range u.values("Service", key) {
		if v == "" {
			set = nil
			continue
		}
		for _, c := range strings.Fields(v) {
			if !slices.Contains(set, c) {
				set = append(set, c)
			}
		}
	}
	return set
}

// execArgs splits an Exec*= value into its words, dropping the
// prefixes ("-", "@", ":", "+", "!") that change how systemd runs it.
func execArgs(v string) ([]string, error) {
	v = strings.TrimLeft(v, "-@:+!")
	words, err := shellWords(v, nil)
	if err != nil {
		return nil, err
	}
	for _, w := range words {
		if w == ";" || w == "&&" {
			return nil, fmt.Errorf("%q: one command per Exec line", v)
		}
	}
	return words, nil
}

// uncommentLowPorts is the unit with the commented capability lines for
// ports below 1024 made active, as its comments tell an operator to do.
func uncommentLowPorts(text string) string {
	re := regexp.MustCompile(`(?m)^#((?:CapabilityBoundingSet|AmbientCapabilities)=CAP_NET_BIND_SERVICE)$`)
	return re.ReplaceAllString(text, "$1")
}

// ---- processes ----

// procStatus returns a field of /proc/PID/status, such as "Uid" or
// "CapEff".
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status: no %s", pid, field)
	return ""
}
