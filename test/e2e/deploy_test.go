package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The examples in examples/kubernetes, examples/systemd and the
// Dockerfile are tested as far as a machine without a cluster, a Docker
// engine or a running systemd allows: their settings are read and checked
// as an operator would, and attlsd is run the way each of them runs it,
// with their paths and ports moved into temporary folders and free ports.

// rotationTimeout bounds how long a renewed certificate may take to be
// served after the kubelet swapped it in.
const rotationTimeout = 10 * time.Second

// TestDeployKubernetes reads examples/kubernetes and checks what a
// careful operator would, then plays the pod on this machine: the
// ConfigMap and the Secret laid out as the kubelet lays them out, attlsd
// run with the Deployment's arguments (as the pod's user, when root), the
// demo backend as the app. The probes and the Service's target port must
// answer, a Secret update the kubelet's way must be served within
// seconds, and SIGTERM must turn readiness off while the process stays
// alive.
func TestDeployKubernetes(t *testing.T) {
	m := loadK8sManifests(t, deployFile(t, k8sExampleDir))
	for _, kind := range []string{"Deployment", "Service", "ConfigMap"} {
		if _, ok := m.files[kind]; !ok {
			t.Fatalf("%s: no %s", k8sExampleDir, kind)
		}
	}
	t.Run("security", func(t *testing.T) { checkK8sSecurity(t, m) })
	t.Run("probes", func(t *testing.T) { checkK8sProbes(t, m) })
	t.Run("service", func(t *testing.T) { checkK8sService(t, m) })
	t.Run("volumes", func(t *testing.T) { checkK8sVolumes(t, m) })
	t.Run("termination", func(t *testing.T) { checkK8sTermination(t, m) })
	t.Run("sidecar", func(t *testing.T) { checkK8sSidecar(t, m) })
	t.Run("low-ports", func(t *testing.T) { checkK8sLowPorts(t, m) })
	t.Run("selectors", func(t *testing.T) { checkK8sSelectors(t, m) })
	t.Run("kustomization", func(t *testing.T) { checkK8sKustomization(t, m) })
	t.Run("pod", func(t *testing.T) { testK8sPod(t, m) })
}

// attlsdContainer is the name of attlsd's container in the Deployment.
const attlsdContainer = "attlsd"

// checkK8sSecurity: the pod runs as a numeric non-root user, and every
// container, sidecars included, has a read-only root file system, no
// privilege escalation and no capability. NET_BIND_SERVICE is refused
// too: a non-root process keeps a capability across exec only as an
// ambient one, which Kubernetes never sets, or from a file capability,
// which the image's binary does not carry, so it would not bind a port
// below 1024 (TestDeployLowPort shows it).
func checkK8sSecurity(t *testing.T, m *k8sManifests) {
	pod := m.deployment.Spec.Template.Spec
	sc := pod.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pod securityContext.runAsNonRoot: want true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod securityContext.runAsUser: got %v, want a non-zero uid", sc.RunAsUser)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod securityContext.seccompProfile: want type RuntimeDefault")
	}
	for _, c := range pod.all() {
		csc := c.SecurityContext
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation: want false", c.Name)
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem: want true", c.Name)
		}
		if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: capabilities.drop: want [ALL]", c.Name)
		} else if add := csc.Capabilities.Add; len(add) > 0 {
			t.Errorf("container %s: capabilities.add: got %v, want none (a non-root process "+
				"loses them at exec)", c.Name, add)
		}
		if csc.RunAsUser != nil && *csc.RunAsUser == 0 {
			t.Errorf("container %s: runAsUser 0", c.Name)
		}
	}
	if len(pod.all()) < 2 {
		t.Errorf("pod: got %d containers, want the app and attlsd", len(pod.all()))
	}
	if a := pod.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("pod automountServiceAccountToken: want false (neither container calls the API)")
	}
}

// checkK8sLowPorts: a port below 1024 in attlsd's container needs the pod
// sysctl net.ipv4.ip_unprivileged_port_start at or under it, the way
// that works for a non-root container.
func checkK8sLowPorts(t *testing.T, m *k8sManifests) {
	c := m.container(t, attlsdContainer)
	start := 1024
	for _, sc := range m.deployment.Spec.Template.Spec.SecurityContext.Sysctls {
		if sc.Name == "net.ipv4.ip_unprivileged_port_start" {
			start, _ = strconv.Atoi(sc.Value)
		}
	}
	for _, p := range c.Ports {
		if p.ContainerPort < start {
			t.Errorf("container %s port %d: below net.ipv4.ip_unprivileged_port_start %d; "+
				"set that pod sysctl, or map the port in the Service", c.Name, p.ContainerPort, start)
		}
	}
}

// checkK8sProbes: readiness on /readyz and liveness on /healthz, on the
// port that --admin names, and --admin listening where the kubelet
// reaches it: the pod's IP, not loopback.
func checkK8sProbes(t *testing.T, m *k8sManifests) {
	c := m.container(t, attlsdContainer)
	adminPort := k8sAdminPort(t, c)
	probes := []struct {
		name  string
		probe *k8sProbe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	}
	if c.StartupProbe != nil {
		probes = append(probes, struct {
			name  string
			probe *k8sProbe
			path  string
		}{"startupProbe", c.StartupProbe, "/readyz"})
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path: got %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		}
		port, ok := c.containerPort(p.probe.HTTPGet.Port)
		if !ok || port != adminPort {
			t.Errorf("%s port %q: resolves to %d, want the --admin port %d", p.name,
				p.probe.HTTPGet.Port, port, adminPort)
		}
	}
}

// k8sAdminPort checks attlsd's --admin argument and returns its port.
func k8sAdminPort(t *testing.T, c *k8sContainer) int {
	t.Helper()
	v, ok := argFlag(c.Args, "admin")
	if !ok {
		t.Fatalf("container %s: no --admin argument, so nothing answers the probes", c.Name)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("--admin %q: want HOST:PORT spelled out (%v)", v, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		t.Errorf("--admin %q: the kubelet probes the pod's IP; want 0.0.0.0 or [::], "+
			"not %q (a port alone means loopback)", v, host)
	}
	n, _ := strconv.Atoi(port)
	if _, ok := c.containerPort(k8sIntOrString(port)); !ok {
		t.Errorf("--admin port %s is not among the container's ports", port)
	}
	return n
}

// checkK8sService: the Service reaches attlsd's TLS port, named, and
// never the admin port.
func checkK8sService(t *testing.T, m *k8sManifests) {
	c := m.container(t, attlsdContainer)
	adminPort := k8sAdminPort(t, c)
	if len(m.service.Spec.Ports) == 0 {
		t.Fatal("Service: no ports")
	}
	for _, p := range m.service.Spec.Ports {
		port, ok := c.containerPort(p.TargetPort)
		switch {
		case !ok:
			t.Errorf("Service port %d: targetPort %q is not a port of container %s", p.Port, p.TargetPort, c.Name)
		case port == adminPort:
			t.Errorf("Service port %d: exposes the admin port %d", p.Port, adminPort)
		}
	}
	if m.service.Spec.Type != "" && m.service.Spec.Type != "ClusterIP" {
		t.Errorf("Service type %q: the example is for clients in the cluster (ClusterIP)", m.service.Spec.Type)
	}
	if np := m.networkPolicy; np != nil {
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if n, _ := c.containerPort(p.Port); n == adminPort && len(in.From) == 0 {
					t.Errorf("NetworkPolicy: admin port %q open to every pod", p.Port)
				}
			}
		}
	}
}

// k8sServicePort is the container port that the Service's first port
// targets.
func k8sServicePort(t *testing.T, m *k8sManifests, c *k8sContainer) int {
	t.Helper()
	p := m.service.Spec.Ports[0]
	n, ok := c.containerPort(p.TargetPort)
	if !ok {
		t.Fatalf("Service targetPort %q: not a port of container %s", p.TargetPort, c.Name)
	}
	return n
}

// checkK8sVolumes: the policy comes from the ConfigMap, the certificates
// from the Secret (the one cert-manager's Certificate fills, when there
// is one), both mounted read-only and without subPath, which the kubelet
// never updates.
func checkK8sVolumes(t *testing.T, m *k8sManifests) {
	c := m.container(t, attlsdContainer)
	policyPath, ok := argFlag(c.Args, "policy")
	if !ok {
		t.Fatalf("container %s: no --policy argument", c.Name)
	}
	var cm, secret string
	for _, vm := range c.VolumeMounts {
		v := m.volume(t, vm.Name)
		if vm.SubPath != "" {
			t.Errorf("volumeMount %s: subPath %q is never updated by the kubelet: no hot reload",
				vm.Name, vm.SubPath)
		}
		if !vm.ReadOnly {
			t.Errorf("volumeMount %s: want readOnly", vm.Name)
		}
		switch {
		case v.ConfigMap != nil && filepath.Dir(policyPath) == vm.MountPath:
			cm = v.ConfigMap.Name
		case v.Secret != nil:
			secret = v.Secret.SecretName
			if mode := v.Secret.DefaultMode; mode == nil || *mode&0o007 != 0 {
				t.Errorf("Secret volume %s: defaultMode %v lets others read the key; want 0440 or tighter",
					vm.Name, mode)
			}
		}
	}
	if cm != m.configMap.Metadata.Name {
		t.Errorf("--policy %s: not in a mount of ConfigMap %q (got %q)", policyPath, m.configMap.Metadata.Name, cm)
	}
	if _, ok := m.configMap.Data[filepath.Base(policyPath)]; !ok {
		t.Errorf("ConfigMap %s: no key %q for --policy", m.configMap.Metadata.Name, filepath.Base(policyPath))
	}
	if secret == "" {
		t.Errorf("container %s: no Secret mounted", c.Name)
	}
	if crt := m.certificate; crt != nil && crt.Spec.SecretName != secret {
		t.Errorf("Certificate %s fills Secret %q; the pod mounts %q", crt.Metadata.Name, crt.Spec.SecretName, secret)
	}
}

// checkK8sTermination: the kubelet waits longer than every preStop pause
// and attlsd's drain together before it kills attlsd. With attlsd a
// native sidecar, its SIGTERM comes only after the app has stopped, so
// the times add up.
func checkK8sTermination(t *testing.T, m *k8sManifests) {
	c := m.container(t, attlsdContainer)
	pod := m.deployment.Spec.Template.Spec
	grace := 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	need := drainTimeoutOf(t, c.Args)
	for _, pc := range pod.all() {
		need += preStopPause(pc)
	}
	if grace <= need {
		t.Errorf("terminationGracePeriodSeconds: got %s, want more than the preStop pauses plus --drain-timeout (%s)",
			grace, need)
	}
}

// preStopPause is a container's preStop sleep, 0 without one.
func preStopPause(c *k8sContainer) time.Duration {
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		return time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	return 0
}

// checkK8sSidecar: the order in which the kubelet stops the pod suits a
// TLS terminator in front of the app. attlsd is a native sidecar, so it
// gets its SIGTERM only once the app has exited; the app pauses in its
// preStop while the Service's endpoints drop the pod, then stops; attlsd
// needs no pause of its own, which would only hold the pod longer.
func checkK8sSidecar(t *testing.T, m *k8sManifests) {
	pod := m.deployment.Spec.Template.Spec
	c := m.container(t, attlsdContainer)
	if !pod.sidecar(c) {
		t.Errorf("container %s: want a native sidecar (in initContainers, restartPolicy: Always), "+
			"so that it stops after the app", c.Name)
	}
	if d := preStopPause(c); d != 0 {
		t.Errorf("container %s: preStop pause %s; want none (it runs once the app has exited)", c.Name, d)
	}
	for i := range pod.Containers {
		app := &pod.Containers[i]
		if preStopPause(app) == 0 {
			t.Errorf("container %s: want a preStop pause, so that it serves while the Service's "+
				"endpoints drop the pod", app.Name)
		}
	}
}

// checkK8sSelectors: the Deployment, Service, PodDisruptionBudget and
// NetworkPolicy all select the pod template's labels.
func checkK8sSelectors(t *testing.T, m *k8sManifests) {
	labels := m.deployment.Spec.Template.Metadata.Labels
	sels := map[string]map[string]string{
		"Deployment": m.deployment.Spec.Selector.MatchLabels,
		"Service":    m.service.Spec.Selector,
	}
	if m.pdb != nil {
		sels["PodDisruptionBudget"] = m.pdb.Spec.Selector.MatchLabels
		if m.deployment.Spec.Replicas < 2 {
			t.Errorf("PodDisruptionBudget with %d replica: it would block every node drain",
				m.deployment.Spec.Replicas)
		}
	}
	if m.networkPolicy != nil {
		sels["NetworkPolicy"] = m.networkPolicy.Spec.PodSelector.MatchLabels
	}
	for kind, sel := range sels {
		if len(sel) == 0 {
			t.Errorf("%s: empty selector", kind)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s; the pod template has %q", kind, k, v, labels[k])
			}
		}
	}
}

// checkK8sKustomization: kustomization.yaml lists every manifest but the
// optional cert-manager one, and kubectl (where installed) renders it.
func checkK8sKustomization(t *testing.T, m *k8sManifests) {
	k := m.kustomization
	if k == nil {
		t.Skip("no kustomization.yaml")
	}
	for kind, file := range m.files {
		listed := slices.Contains(k.Resources, file)
		switch kind {
		case "Kustomization":
		case "Certificate":
			if listed {
				t.Errorf("%s: lists %s, which needs cert-manager installed first", m.files[kind], file)
			}
		default:
			if !listed {
				t.Errorf("kustomization.yaml: %s (%s) not among resources %v", file, kind, k.Resources)
			}
		}
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed (Debian has no package for it): kustomize rendering not checked")
		return
	}
	out, stderr, code := run(t, "", kubectl, "kustomize", m.dir)
	if code != 0 {
		t.Fatalf("kubectl kustomize %s: exit %d: %s", m.dir, code, stderr)
	}
	for kind, file := range m.files {
		if slices.Contains(k.Resources, file) && !strings.Contains(out, "kind: "+kind+"\n") {
			t.Errorf("kubectl kustomize: no %s in the output", kind)
		}
	}
}

// k8sPod is the pod played on this machine.
type k8sPod struct {
	d      *daemon
	https  string // attlsd's TLS address, the Service's target
	admin  string // http://127.0.0.1:PORT
	secret *kubeletVolume
	ports  map[int]int // manifest port to the port used here
}

// testK8sPod runs the pod and drives it from outside.
func testK8sPod(t *testing.T, m *k8sManifests) {
	c := m.container(t, attlsdContainer)
	policyText := m.configMap.Data[filepath.Base(mustArg(t, c.Args, "policy"))]
	rule, appPort, proxyV2 := k8sPolicyFacts(t, policyText)

	// The app: the demo backend on a free port standing for its own.
	appAddr := startDemoBackend(t, "")
	_, appHere, _ := net.SplitHostPort(appAddr)
	appHereN, _ := strconv.Atoi(appHere)

	httpsPort, adminPort := k8sServicePort(t, m, c), k8sAdminPort(t, c)
	var pod *k8sPod
	for try := 1; ; try++ {
		free := freePorts(t, "127.0.0.1", 2)
		ports := map[int]int{httpsPort: free[0], adminPort: free[1], appPort: appHereN}
		var err error
		if pod, err = launchK8sPod(t, m, c, ports); err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("start the pod's attlsd: %v", err)
		}
	}
	checkK8sStarted(t, pod)

	t.Run("probes", func(t *testing.T) {
		for _, p := range []*k8sProbe{c.ReadinessProbe, c.LivenessProbe} {
			waitStatus(t, pod.admin+p.HTTPGet.Path, 200, startTimeout)
		}
	})
	t.Run("service-target-port", func(t *testing.T) {
		checkK8sServes(t, pod, rule, proxyV2)
	})
	t.Run("secret-rotation", func(t *testing.T) {
		testK8sRotation(t, pod, rule, proxyV2)
	})
	t.Run("termination", func(t *testing.T) {
		testK8sTermination(t, pod, c)
	})
}

// mustArg returns --name's value or fails.
func mustArg(t *testing.T, args []string, name string) string {
	t.Helper()
	v, ok := argFlag(args, name)
	if !ok {
		t.Fatalf("no --%s in %q", name, args)
	}
	return v
}

// k8sPolicyFacts reads from the ConfigMap's policy the inbound rule's
// name, the app's port (its backend must be on the pod's loopback) and
// whether it sends a PROXY v2 header.
func k8sPolicyFacts(t *testing.T, policy string) (rule string, appPort int, proxyV2 bool) {
	t.Helper()
	r := regexp.MustCompile(`(?m)^\s*inbound\s+"([^"]+)"`).FindAllStringSubmatch(policy, -1)
	if len(r) != 1 {
		t.Fatalf("ConfigMap policy: got %d inbound rules, want 1", len(r))
	}
	b := regexp.MustCompile(`(?m)^\s*backend\s*=\s*"127\.0\.0\.1:(\d+)"`).FindStringSubmatch(policy)
	if b == nil {
		t.Fatal("ConfigMap policy: want backend = \"127.0.0.1:PORT\": the app must listen on the pod's loopback only")
	}
	appPort, _ = strconv.Atoi(b[1])
	pp := regexp.MustCompile(`(?m)^\s*proxy_protocol\s*=\s*"(\w+)"`).FindStringSubmatch(policy)
	proxyV2 = pp == nil || pp[1] == "v2"
	return r[0][1], appPort, proxyV2
}

// launchK8sPod lays out the pod's volumes in a new folder, with paths
// and ports moved as ports says, and starts attlsd with the container's
// arguments: as the pod's user and fsGroup when this test runs as root,
// as the test's own user otherwise.
func launchK8sPod(t *testing.T, m *k8sManifests, c *k8sContainer, ports map[int]int) (*k8sPod, error) {
	t.Helper()
	root := deployDir(t)
	sc := m.deployment.Spec.Template.Spec.SecurityContext
	gid := -1
	if os.Geteuid() == 0 && sc.FSGroup != nil {
		gid = int(*sc.FSGroup)
	}

	paths := map[string]string{}
	for _, vm := range c.VolumeMounts {
		paths[vm.MountPath] = filepath.Join(root, "volumes", vm.Name)
	}
	remap := func(s string) string { return remapK8s(s, ports, paths) }

	pod := &k8sPod{ports: ports}
	for _, vm := range c.VolumeMounts {
		v := m.volume(t, vm.Name)
		dir := paths[vm.MountPath]
		switch {
		case v.ConfigMap != nil:
			files := map[string][]byte{}
			for k, text := range m.configMap.Data {
				files[k] = []byte(remap(text))
			}
			newKubeletVolume(t, dir, volumeMode(v.ConfigMap.DefaultMode), gid, files)
		case v.Secret != nil:
			pod.secret = newKubeletVolume(t, dir, volumeMode(v.Secret.DefaultMode), gid, map[string][]byte{
				"tls.crt": readDevFile(t, "server.pem"),
				"tls.key": readDevFile(t, "server-key.pem"),
				"ca.crt":  readDevFile(t, "ca.pem"),
			})
		}
	}

	var args []string
	for _, a := range c.Args {
		args = append(args, remap(a))
	}
	cmd := exec.Command(attlsdBin, args...)
	if gid >= 0 {
		setpriv := needTool(t, "setpriv", "util-linux")
		bin := copyExecutable(t, attlsdBin, filepath.Join(root, "bin"))
		cmd = exec.Command(setpriv, append([]string{
			"--reuid=" + strconv.FormatInt(*sc.RunAsUser, 10),
			"--regid=" + strconv.FormatInt(*sc.RunAsGroup, 10),
			"--groups=" + strconv.Itoa(gid), "--", bin}, args...)...)
	}
	d, err := launchCmd(cmd, remap(mustArg(t, c.Args, "policy")), nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.stop(t) })
	pod.d = d
	for manifest, here := range ports {
		switch manifest {
		case k8sServicePort(t, m, c):
			pod.https = "127.0.0.1:" + itoa(here)
		case k8sAdminPort(t, c):
			pod.admin = "http://127.0.0.1:" + itoa(here)
		}
	}
	return pod, nil
}

// volumeMode is a volume's defaultMode, 0644 when unset as in Kubernetes.
func volumeMode(m *int) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m)
}

// remapK8s moves the manifest's ports and mount paths to the ones used
// here. Ports first: the temporary paths hold digits.
func remapK8s(s string, ports map[int]int, paths map[string]string) string {
	for from, to := range ports {
		re := regexp.MustCompile(`\b` + strconv.Itoa(from) + `\b`)
		s = re.ReplaceAllString(s, strconv.Itoa(to))
	}
	mounts := make([]string, 0, len(paths))
	for p := range paths {
		mounts = append(mounts, p)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, p := range mounts {
		s = strings.ReplaceAll(s, p, paths[p])
	}
	return s
}

// checkK8sStarted: attlsd started as the pod's user, with the admin
// endpoint on every address.
func checkK8sStarted(t *testing.T, pod *k8sPod) {
	t.Helper()
	l, ok := pod.d.log.find(isMessage("attlsd started"))
	if !ok {
		t.Fatal("no \"attlsd started\" line")
	}
	host, _, err := net.SplitHostPort(l.str("admin"))
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsUnspecified() {
		t.Errorf("admin endpoint on %q: want every address, so the kubelet reaches it", l.str("admin"))
	}
	if os.Geteuid() == 0 {
		uid := strings.Fields(procStatus(t, pod.d.cmd.Process.Pid, "Uid"))[0]
		t.Logf("attlsd runs as uid %s; Secret files mode %04o, group %d",
			uid, pod.secret.mode, pod.secret.gid)
		if uid == "0" {
			t.Errorf("attlsd runs as root, want the pod's runAsUser")
		}
	}
	if w, ok := pod.d.log.find(func(l logLine) bool {
		return l.str("level") == "warn" && strings.Contains(l.String(), "readable by group")
	}); ok {
		t.Logf("attlsd warns about the Secret's key mode (fsGroup makes it group-readable): %s", w)
	}
}

// checkK8sServes fetches / through the Service's target port: the app
// answers, with the client's real address from the PROXY header.
func checkK8sServes(t *testing.T, pod *k8sPod, rule string, proxyV2 bool) {
	t.Helper()
	url, resolve := httpsURL(pod.https)
	res := curl(t, url, resolve...)
	if res.code != 0 {
		t.Fatalf("curl %s: exit %d: %s", url, res.code, res.stderr)
	}
	r := parseDemoReply(t, res.body)
	if r.ProxyHeader != proxyV2 {
		t.Errorf("app saw a PROXY header: got %v, want %v", r.ProxyHeader, proxyV2)
	}
	if proxyV2 && (r.Client != res.local || r.Rule != rule) {
		t.Errorf("app saw client %q rule %q; want curl's %q and rule %q", r.Client, r.Rule, res.local, rule)
	}
}

// testK8sRotation renews the Secret the kubelet's way and waits for the
// new certificate to be served.
func testK8sRotation(t *testing.T, pod *k8sPod, rule string, proxyV2 bool) {
	before, err := servedSerial(t, pod.https)
	if err != nil {
		t.Fatal(err)
	}
	renewed := issueServerPair(t)
	start := time.Now()
	pod.secret.update(t, map[string][]byte{
		"tls.crt": renewed.cert, "tls.key": renewed.key, "ca.crt": readDevFile(t, "ca.pem"),
	})
	for {
		got, err := servedSerial(t, pod.https)
		if err == nil && got.Text(16) == renewed.serial {
			break
		}
		if time.Since(start) > rotationTimeout {
			t.Fatalf("served serial %x (%v), want the new %s within %s (was %x)",
				got, err, renewed.serial, rotationTimeout, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("renewed certificate served %s after the ..data swap", time.Since(start).Round(time.Millisecond))
	if _, err := pod.d.log.wait(logTimeout, pod.d.exited, func(l logLine) bool {
		return strings.HasPrefix(l.str("message"), "policy reloaded") && l["rotated"] != nil
	}); err != nil {
		t.Errorf("no \"policy reloaded\" line naming the rotated environment: %v", err)
	}
	checkK8sServes(t, pod, rule, proxyV2)
}

// testK8sTermination sends SIGTERM, as the kubelet does after preStop,
// with a client connected: readiness turns 503 so the Service stops
// sending new clients, liveness stays 200 so the kubelet does not
// restart a draining attlsd, and attlsd exits 0 once the client leaves.
func testK8sTermination(t *testing.T, pod *k8sPod, c *k8sContainer) {
	conn := dialTLS(t, pod.https, clientTLS(t))
	pod.d.cmd.Process.Signal(syscall.SIGTERM)
	waitStatus(t, pod.admin+c.ReadinessProbe.HTTPGet.Path, 503, logTimeout)
	if code, body, err := deployGet(pod.admin + c.LivenessProbe.HTTPGet.Path); err != nil || code != 200 {
		t.Errorf("liveness while draining: got %d %q (%v), want 200", code, body, err)
	}
	conn.Close()
	select {
	case <-pod.d.exited:
	case <-time.After(drainTimeoutOf(t, c.Args)):
		t.Fatal("attlsd still running after its client left and the drain timeout passed")
	}
	if pod.d.err != nil {
		t.Errorf("attlsd exit after SIGTERM: %v, want status 0", pod.d.err)
	}
}

// TestDeploySystemd reads examples/systemd/attlsd.service: its settings
// and sandbox, the variant for ports below 1024, systemd's own verdict on
// both (systemd-analyze verify and security), and then runs its ExecStart
// and its ExecReload commands as systemd would and checks that attlsd
// reloaded, and that a broken policy fails the reload instead.
func TestDeploySystemd(t *testing.T) {
	b, err := os.ReadFile(deployFile(t, unitExample))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	u := parseUnit(t, text)
	t.Run("settings", func(t *testing.T) { checkUnitSettings(t, u) })
	t.Run("sandbox", func(t *testing.T) { checkUnitSandbox(t, u) })
	t.Run("low-ports", func(t *testing.T) {
		low := uncommentLowPorts(text)
		if low == text {
			t.Fatal("no commented CapabilityBoundingSet=/AmbientCapabilities=CAP_NET_BIND_SERVICE lines to enable")
		}
		lu := parseUnit(t, low)
		want := []string{"CAP_NET_BIND_SERVICE"}
		for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
			if got := lu.capSet(key); !slices.Equal(got, want) {
				t.Errorf("with the low-port lines on, %s: got %v, want %v", key, got, want)
			}
		}
	})
	t.Run("systemd-analyze", func(t *testing.T) { testSystemdAnalyze(t, text) })
	t.Run("exec", func(t *testing.T) { testUnitExec(t, u) })
}

// checkUnitSettings: how systemd starts, stops, reloads and restarts it.
func checkUnitSettings(t *testing.T, u systemdUnit) {
	if got := u.value("Service", "Type"); got != "exec" {
		t.Errorf("Type: got %q, want exec (attlsd does not notify)", got)
	}
	if got := u.value("Service", "Restart"); got != "on-failure" {
		t.Errorf("Restart: got %q, want on-failure", got)
	}
	if user := u.value("Service", "User"); (user == "" || user == "root" || user == "0") &&
		u.value("Service", "DynamicUser") != "yes" {
		t.Errorf("User: got %q, want a dedicated user or DynamicUser=yes", user)
	}
	start := unitExecStart(t, u)
	if !filepath.IsAbs(start[0]) || len(start) < 2 || start[1] != "run" {
		t.Errorf("ExecStart: got %q, want /ABSOLUTE/attlsd run ...", start)
	}
	hup := false
	for _, v := range u.values("Service", "ExecReload") {
		args, err := execArgs(v)
		if err != nil {
			t.Fatal(err)
		}
		hup = hup || slices.Equal(args, []string{"/bin/kill", "-HUP", "$MAINPID"})
	}
	if !hup {
		t.Errorf("ExecReload: no /bin/kill -HUP $MAINPID among %q", u.values("Service", "ExecReload"))
	}
	stop, err := unitDuration(u.value("Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if drain := drainTimeoutOf(t, start); stop <= drain {
		t.Errorf("TimeoutStopSec: got %s, want more than --drain-timeout %s", stop, drain)
	}
}

// checkUnitSandbox: the hardening settings that matter for attlsd.
func checkUnitSandbox(t *testing.T, u systemdUnit) {
	want := map[string]string{
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
	}
	for k, v := range want {
		if got := u.value("Service", k); got != v {
			t.Errorf("%s: got %q, want %q", k, got, v)
		}
	}
	fams := strings.Fields(u.value("Service", "RestrictAddressFamilies"))
	slices.Sort(fams)
	if !slices.Equal(fams, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
		t.Errorf("RestrictAddressFamilies: got %v, want AF_INET AF_INET6 AF_UNIX", fams)
	}
	if !slices.Contains(u.values("Service", "SystemCallFilter"), "@system-service") {
		t.Errorf("SystemCallFilter: want @system-service among %q", u.values("Service", "SystemCallFilter"))
	}
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if got := u.capSet(key); len(got) != 0 {
			t.Errorf("%s: got %v, want none by default", key, got)
		}
	}
	if len(u.values("Service", "CapabilityBoundingSet")) == 0 {
		t.Errorf("CapabilityBoundingSet: unset means every capability; want it empty")
	}
	// A private user namespace would make CAP_NET_BIND_SERVICE useless
	// on the host's network: the low-port variant would not work.
	if u.value("Service", "PrivateUsers") == "yes" {
		t.Errorf("PrivateUsers=yes: defeats CAP_NET_BIND_SERVICE for ports below 1024")
	}
	policy := mustArg(t, unitExecStart(t, u), "policy")
	ro := strings.Fields(strings.Join(u.values("Service", "ReadOnlyPaths"), " "))
	if !slices.Contains(ro, filepath.Dir(policy)) {
		t.Errorf("ReadOnlyPaths %v: want the policy folder %s", ro, filepath.Dir(policy))
	}
}

// unitExecStart is the unit's one ExecStart, split into words.
func unitExecStart(t *testing.T, u systemdUnit) []string {
	t.Helper()
	vs := u.values("Service", "ExecStart")
	if len(vs) != 1 {
		t.Fatalf("ExecStart: got %d lines, want 1", len(vs))
	}
	args, err := execArgs(vs[0])
	if err != nil || len(args) == 0 {
		t.Fatalf("ExecStart %q: %v", vs[0], err)
	}
	return args
}

// unitDuration parses a systemd time span such as "45s", "2min" or
// "1min 30s".
func unitDuration(s string) (time.Duration, error) {
	if s == "" {
		return 90 * time.Second, nil // DefaultTimeoutStopSec
	}
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	s = strings.NewReplacer("min", "m", " ", "").Replace(s)
	return time.ParseDuration(s)
}

// testSystemdAnalyze asks systemd about the unit and its low-port
// variant, with the binary path moved to the test's build: verify must
// find no problem, and security must rate the sandbox no worse than 2.0
// ("OK") on its 0 to 10 exposure scale.
func testSystemdAnalyze(t *testing.T, text string) {
	sa := needTool(t, "systemd-analyze", "systemd")
	start := unitExecStart(t, parseUnit(t, text))
	for name, unit := range map[string]string{"default": text, "low-ports": uncommentLowPorts(text)} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "attlsd.service")
			writeFile(t, file, strings.ReplaceAll(unit, start[0], attlsdBin))
			out, stderr, code := run(t, "", sa, "verify", file)
			if code != 0 || strings.TrimSpace(out+stderr) != "" {
				t.Errorf("systemd-analyze verify: exit %d, want 0 and silence:\n%s%s", code, out, stderr)
			}
			out, stderr, code = run(t, "", sa, "security", "--offline=yes", "--threshold=20", file)
			level := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+ \S+)`).FindStringSubmatch(out)
			if code != 0 || level == nil {
				t.Errorf("systemd-analyze security: exit %d, want 0 (exposure at most 2.0):\n%s%s",
					code, out, stderr)
				return
			}
			t.Logf("systemd-analyze security: exposure %s", level[1])
		})
	}
}

// testUnitExec runs ExecStart, with /etc/attlsd and the admin port moved
// to a temporary folder and a free port, then the ExecReload commands in
// order with $MAINPID set, as systemctl reload does.
func testUnitExec(t *testing.T, u systemdUnit) {
	start := unitExecStart(t, u)
	policy := mustArg(t, start, "policy")
	etc := filepath.Dir(policy)
	dir := filepath.Join(t.TempDir(), "etc-attlsd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	remap := func(args []string, admin int) []string {
		out := make([]string, len(args))
		for i, a := range args {
			switch {
			case a == start[0]:
				a = attlsdBin
			case strings.HasPrefix(a, etc+"/"):
				a = dir + strings.TrimPrefix(a, etc)
			}
			out[i] = a
		}
		if i := slices.Index(out, "--admin"); i >= 0 && i+1 < len(out) {
			host, _, _ := net.SplitHostPort(out[i+1])
			out[i+1] = net.JoinHostPort(host, itoa(admin))
		}
		return out
	}

	file := dir + strings.TrimPrefix(policy, etc)
	var d *daemon
	var admin int
	for try := 1; ; try++ {
		ports := freePorts(t, "127.0.0.1", 2)
		writeFile(t, file, environment()+inbound("unit", ports[0], "127.0.0.1:9"))
		args := remap(start, ports[1])
		var err error
		if d, err = launchCmd(exec.Command(args[0], args[1:]...), file, ports); err == nil {
			admin = ports[1]
			break
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("ExecStart %q: %v", args, err)
		}
	}
	t.Cleanup(func() { d.stop(t) })
	if slices.Contains(start, "--admin") {
		waitStatus(t, "http://127.0.0.1:"+itoa(admin)+"/readyz", 200, startTimeout)
	}

	reload := func() (failed []string, stderr string) {
		pid := strconv.Itoa(d.cmd.Process.Pid)
		for _, v := range u.values("Service", "ExecReload") {
			args, err := execArgs(strings.NewReplacer("${MAINPID}", pid, "$MAINPID", pid).Replace(v))
			if err != nil {
				t.Fatal(err)
			}
			args = remap(args, admin)
			_, stderr, code := run(t, "", args[0], args[1:]...)
			if code != 0 {
				return args, stderr // systemd stops at the first failure
			}
		}
		return nil, ""
	}

	if failed, stderr := reload(); failed != nil {
		t.Fatalf("ExecReload %q failed: %s", failed, stderr)
	}
	if _, err := d.log.wait(logTimeout, d.exited, func(l logLine) bool {
		return strings.HasPrefix(l.str("message"), "policy reloaded") && l.str("trigger") == "signal"
	}); err != nil {
		t.Fatalf("after ExecReload: no \"policy reloaded\" line from the signal: %v\n%s", err, d.log.text())
	}

	// With `attlsd check` before the signal, a broken policy fails the
	// reload itself, with the mistake's file:line:col for systemctl status.
	checks := false
	for _, v := range u.values("Service", "ExecReload") {
		args, _ := execArgs(v)
		checks = checks || (len(args) > 1 && args[0] == start[0] && args[1] == "check")
	}
	if !checks {
		return
	}
	good, _ := os.ReadFile(file)
	writeFile(t, file, string(good)+"\ninbound \"broken\" {\n  port = \"x\"\n}\n")
	failed, stderr := reload()
	if failed == nil || failed[1] != "check" || !strings.Contains(stderr, file+":") {
		t.Errorf("ExecReload with a broken policy: failed at %q with %q; want attlsd check to fail naming %s:LINE:COL",
			failed, stderr, file)
	}
	select {
	case <-d.exited:
		t.Fatal("attlsd exited after a failed reload")
	default:
	}
	writeFile(t, file, string(good))
}

// TestDeployContainer builds attlsd exactly as the Dockerfile's build
// stage does, same environment and flags, and checks what the final
// stage relies on: a static binary (the distroless base has no C
// library), the version stamped, no shell needed by ENTRYPOINT or CMD, a
// numeric non-root USER, and that ENTRYPOINT plus CMD start attlsd on a
// policy at the path CMD names. It also checks that .dockerignore keeps
// key material and version control out of the build context but keeps
// every file the build needs.
func TestDeployContainer(t *testing.T) {
	const version = "v0.0.0-deploy-test"
	df := parseDockerfile(t, deployFile(t, dockerfilePath), map[string]string{
		"VERSION":        version, // as with --build-arg VERSION=...
		"TARGETOS":       "linux",
		"TARGETARCH":     runtime.GOARCH,
		"BUILDPLATFORM":  "linux/" + runtime.GOARCH,
		"TARGETPLATFORM": "linux/" + runtime.GOARCH,
	})
	final := df.last()
	copySrc, copyDst, build := checkFinalStage(t, df)

	t.Run("builder", func(t *testing.T) { checkBuilderGo(t, build) })
	t.Run("dockerignore", func(t *testing.T) { checkDockerIgnore(t) })
	t.Run("binary", func(t *testing.T) {
		bin := buildLikeDockerfile(t, build, copySrc, version)
		checkStatic(t, bin)
		stdout, stderr, code := run(t, "", bin, "version")
		if code != 0 || !strings.HasPrefix(stdout, "attlsd "+version+" ") {
			t.Errorf("version: got exit %d %q %q, want \"attlsd %s (go...)\"", code, stdout, stderr, version)
		}
		testEntrypoint(t, final, bin, copyDst)
	})
}

// checkFinalStage checks the last stage and returns what it copies from
// the build stage (source and destination) and that stage.
func checkFinalStage(t *testing.T, df *dockerfile) (src, dst string, build *dockerStage) {
	t.Helper()
	final := df.last()
	switch {
	case strings.HasPrefix(final.image, "gcr.io/distroless/static"):
		// CA certificates, /etc/passwd and tzdata, no shell
	case final.image == "scratch":
		if !strings.Contains(fmt.Sprint(final.all("COPY")), "ca-certificates") {
			t.Errorf("FROM scratch: no CA certificates copied; outbound rules on system roots would fail")
		}
	default:
		t.Errorf("final FROM %q: want gcr.io/distroless/static... or scratch", final.image)
	}
	for _, cmd := range []string{"RUN", "SHELL"} {
		if ins := final.all(cmd); len(ins) > 0 {
			t.Errorf("final stage line %d: %s needs a shell the image lacks", ins[0].line, cmd)
		}
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Errorf("final stage: no USER: the image would run as root")
	} else {
		u := users[len(users)-1].rest
		uid, _, _ := strings.Cut(u, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric non-zero uid (Kubernetes' runAsNonRoot checks it)", u)
		}
	}
	if len(final.all("EXPOSE")) == 0 {
		t.Errorf("final stage: no EXPOSE")
	}
	for _, in := range final.all("COPY") {
		f := strings.Fields(in.rest)
		if from, ok := strings.CutPrefix(f[0], "--from="); ok && len(f) == 3 {
			src, dst, build = f[1], f[2], df.stage(from)
		}
	}
	if build == nil {
		t.Fatal("final stage: no COPY --from=STAGE SRC DST of the binary")
	}
	return src, dst, build
}

// checkBuilderGo: the build stage's Go is at least the go.mod version.
func checkBuilderGo(t *testing.T, build *dockerStage) {
	img := regexp.MustCompile(`^golang:(\d+)\.(\d+)(?:\.(\d+))?`).FindStringSubmatch(build.image)
	if img == nil {
		t.Fatalf("build stage FROM %q: want golang:X.Y.Z...", build.image)
	}
	mod, err := os.ReadFile(deployFile(t, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(?:\.(\d+))?`).FindStringSubmatch(string(mod))
	for i := 1; i <= 3; i++ {
		a, _ := strconv.Atoi(img[i])
		b, _ := strconv.Atoi(want[i])
		if a != b {
			if a < b {
				t.Errorf("build stage %s: older than go.mod's go %s", build.image, want[0][3:])
			}
			return
		}
	}
}

// buildLikeDockerfile runs the build stage's go build command here, with
// its environment and flags, into a temporary file.
func buildLikeDockerfile(t *testing.T, build *dockerStage, out, version string) string {
	t.Helper()
	step := findGoBuild(t, build)
	if !slices.Contains(step.env, "CGO_ENABLED=0") {
		t.Errorf("go build environment %q: want CGO_ENABLED=0 for a static binary", step.env)
	}
	if !slices.Contains(step.args, "-trimpath") {
		t.Errorf("go build %q: want -trimpath", step.args)
	}
	ld, _ := argFlag(step.args, "ldflags")
	for _, f := range []string{"-s", "-w", "-X main.buildVersion=" + version} {
		if !strings.Contains(" "+ld+" ", " "+f+" ") {
			t.Errorf("-ldflags %q: want %q", ld, f)
		}
	}
	bin := filepath.Join(t.TempDir(), "attlsd")
	args := slices.Clone(step.args)
	i := slices.Index(args, "-o")
	if i < 0 || i+1 >= len(args) || args[i+1] != out {
		t.Fatalf("go build %q: want -o %s, the file the final stage copies", args, out)
	}
	args[i+1] = bin

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = filepath.Dir(deployFile(t, "go.mod"))
	// .dockerignore leaves .git out, so the build in the image has no
	// version control to stamp.
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-buildvcs=false"), step.env...)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", step.env, args, err, b)
	}
	t.Logf("built %s %s in %s", strings.Join(step.env, " "), strings.Join(args, " "),
		time.Since(start).Round(time.Millisecond))
	return bin
}

// checkDockerIgnore: version control and every key or certificate stay
// out of the build context; go.mod, go.sum and every Go file of attlsd's
// own packages stay in.
func checkDockerIgnore(t *testing.T) {
	ig := readDockerIgnore(t, deployFile(t, dockerignore))
	for _, p := range []string{".git/config", "examples/certs/server-key.pem",
		"certs/x/server-key.pem", "tls.key", "bin/attlsd"} {
		if !ig.ignored(p) {
			t.Errorf(".dockerignore: %s would be sent to the build", p)
		}
	}
	root := filepath.Dir(deployFile(t, "go.mod"))
	stdout, stderr, code := run(t, "", goTool(), "list", "-C", root, "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`,
		"./cmd/attlsd")
	if code != 0 {
		t.Fatalf("go list: exit %d: %s", code, stderr)
	}
	need := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		f := strings.Fields(line)
		for _, name := range f[1:] {
			rel, _ := filepath.Rel(root, filepath.Join(f[0], name))
			need = append(need, filepath.ToSlash(rel))
		}
	}
	for _, p := range need {
		if ig.ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
}

// testEntrypoint runs ENTRYPOINT plus CMD, exec form, with the binary at
// bin and the policy folder moved to a temporary one.
func testEntrypoint(t *testing.T, final *dockerStage, bin, binInImage string) {
	t.Helper()
	var argv []string
	for _, cmd := range []string{"ENTRYPOINT", "CMD"} {
		ins := final.all(cmd)
		if len(ins) == 0 {
			t.Fatalf("final stage: no %s", cmd)
		}
		var words []string
		if err := json.Unmarshal([]byte(ins[len(ins)-1].rest), &words); err != nil {
			t.Fatalf("%s %s: want the exec form, a JSON array: the image has no shell (%v)",
				cmd, ins[len(ins)-1].rest, err)
		}
		argv = append(argv, words...)
	}
	if argv[0] != binInImage && argv[0] != filepath.Base(binInImage) {
		t.Errorf("ENTRYPOINT %q: want the copied binary %s", argv[0], binInImage)
	}
	policy := mustArg(t, argv, "policy")
	dir := t.TempDir()
	file := filepath.Join(dir, filepath.Base(policy))
	for try := 1; ; try++ {
		ports := freePorts(t, "127.0.0.1", 1)
		writeFile(t, file, environment()+inbound("image", ports[0], "127.0.0.1:9"))
		args := slices.Clone(argv[1:])
		args[slices.Index(args, policy)] = file
		d, err := launchCmd(exec.Command(bin, args...), file, ports)
		if err == nil {
			t.Cleanup(func() { d.stop(t) })
			if _, err := servedSerial(t, d.addr("127.0.0.1", 0)); err != nil {
				t.Errorf("TLS handshake with the image's attlsd: %v", err)
			}
			return
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("ENTRYPOINT+CMD %q: %v", args, err)
		}
	}
}

// TestDeployLowPort binds port 443 as an unprivileged user, in a network
// namespace of its own (so that the host's ip_unprivileged_port_start
// does not matter), each way the README names: without a capability
// attlsd must fail saying why; with CAP_NET_BIND_SERVICE, ambient (as
// systemd's AmbientCapabilities gives it) or on the file (setcap), it
// must start and serve. A Kubernetes container's capabilities.add, as a
// non-root user without privilege escalation gets it, must not be enough
// for the image's binary, which carries no file capability; the pod
// sysctl net.ipv4.ip_unprivileged_port_start, with no capability at all,
// must. On a high port it serves with no capability at all (README,
// Running unprivileged). Its key is readable by nobody alone.
func TestDeployLowPort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("ports below 1024: needs root to make a network namespace and switch users; running as uid %d",
			os.Geteuid())
	}
	ip := needTool(t, "ip", "iproute2")
	setpriv := needTool(t, "setpriv", "util-linux")
	curlBin := needTool(t, "curl", "curl")

	ns := fmt.Sprintf("attlsd-%d-lowport", os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("ports below 1024: cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
	if out, err := exec.Command(ip, "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	inNS := func(args ...string) []string { return append([]string{"netns", "exec", ns}, args...) }

	// The app on 127.0.0.1:8080 inside the namespace.
	app := startProc(t, ip, inNS(backendBin, "--listen", "127.0.0.1:8080")...)
	if _, err := app.out.waitText(startTimeout, app.exited, "listening"); err != nil {
		t.Fatalf("demo backend in %s: %v", ns, err)
	}

	// Everything attlsd reads belongs to nobody (65534), keys mode 0600.
	dir := deployDir(t)
	bin := copyExecutable(t, attlsdBin, filepath.Join(dir, "bin"))
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"server.pem": 0o644, "server-key.pem": 0o600} {
		p := filepath.Join(certs, name)
		if err := os.WriteFile(p, readDevFile(t, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{certs, filepath.Join(certs, "server.pem"), filepath.Join(certs, "server-key.pem")} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	policyOn := func(name string, port int) string {
		file := filepath.Join(dir, name)
		writeFile(t, file, block("environment", "web",
			`certificate = "certs/server.pem"`, `private_key = "certs/server-key.pem"`,
			`alpn = ["http/1.1"]`)+
			inbound("https", port, "127.0.0.1:8080"))
		return file
	}
	file := policyOn("policy.hcl", 443)
	nobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
	caps := []string{"--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"}

	// A non-root container with capabilities.add [NET_BIND_SERVICE] and
	// allowPrivilegeEscalation: false: the runtime has the capability in
	// the bounding and permitted sets before it executes the entrypoint,
	// none ambient, and no_new_privs.
	k8sAdd := []string{"--bounding-set=-all,+net_bind_service", "--no-new-privs"}
	refused := func(t *testing.T, prefix ...string) {
		t.Helper()
		args := inNS(append(prefix, "run", "--policy", file)...)
		_, stderr, code := run(t, "", ip, args...)
		if code != 1 || !strings.Contains(stderr, "127.0.0.1:443") || !strings.Contains(stderr, "permission denied") {
			t.Errorf("unprivileged on 443: got exit %d, stderr %q; want 1 and a line naming 127.0.0.1:443 "+
				"and \"permission denied\"", code, stderr)
		}
	}
	t.Run("no-capability", func(t *testing.T) {
		refused(t, append(append([]string{setpriv}, nobody...), bin)...)
	})
	t.Run("ambient-capability", func(t *testing.T) {
		args := append(append(append([]string{setpriv}, nobody...), caps...), bin)
		serveLowPort(t, ip, inNS, curlBin, args, file, 443, netBindService)
	})
	// The README's example: a high port needs no capability at all.
	t.Run("high-port-no-capability", func(t *testing.T) {
		args := append(append([]string{setpriv}, nobody...), bin)
		serveLowPort(t, ip, inNS, curlBin, args, policyOn("high.hcl", 8443), 8443, noCapabilities)
	})
	t.Run("file-capability", func(t *testing.T) {
		setcap := needTool(t, "setcap", "libcap2-bin")
		fileBin := copyExecutable(t, bin, filepath.Join(dir, "setcap"))
		if out, err := exec.Command(setcap, "cap_net_bind_service=+ep", fileBin).CombinedOutput(); err != nil {
			t.Skipf("setcap on %s (the file system may not keep capabilities): %v: %s", fileBin, err, out)
		}
		args := append(append([]string{setpriv}, nobody...), fileBin)
		serveLowPort(t, ip, inNS, curlBin, args, file, 443, netBindService)
	})
	t.Run("kubernetes-capabilities-add", func(t *testing.T) {
		refused(t, append(append(append([]string{setpriv}, nobody...), k8sAdd...), bin)...)
	})
	t.Run("unprivileged-port-sysctl", func(t *testing.T) {
		sysctl := needTool(t, "sysctl", "procps")
		const key = "net.ipv4.ip_unprivileged_port_start"
		if out, err := exec.Command(ip, inNS(sysctl, "-w", key+"=443")...).CombinedOutput(); err != nil {
			t.Fatalf("sysctl -w %s=443 in %s: %v: %s", key, ns, err, out)
		}
		t.Cleanup(func() { exec.Command(ip, inNS(sysctl, "-w", key+"=1024")...).Run() })
		// As the non-root pod runs it: no capability at all, no_new_privs.
		args := append(append([]string{setpriv}, nobody...), "--bounding-set=-all", "--no-new-privs", bin)
		serveLowPort(t, ip, inNS, curlBin, args, file, 443, noCapabilities)
	})
}

// Capability sets as /proc/PID/status prints them.
const (
	netBindService = "0000000000000400" // 1 << CAP_NET_BIND_SERVICE (10)
	noCapabilities = "0000000000000000"
)

// serveLowPort starts attlsd (the last word of prefix) in the namespace
// and checks it runs as nobody with exactly the capabilities capEff
// (permitted ones too), and serves https://localhost:port/.
func serveLowPort(t *testing.T, ip string, inNS func(...string) []string, curlBin string,
	prefix []string, file string, port int, capEff string) {
	t.Helper()
	args := inNS(append(prefix, "run", "--policy", file, "--drain-timeout", "1s")...)
	d, err := launchCmd(exec.Command(ip, args...), file, []int{port})
	if err != nil {
		t.Fatalf("attlsd on %d with capabilities %s: %v", port, capEff, err)
	}
	t.Cleanup(func() { d.stop(t) })

	pid := d.cmd.Process.Pid
	if uid := strings.Fields(procStatus(t, pid, "Uid")); uid[1] != "65534" {
		t.Errorf("attlsd effective uid: got %s, want 65534", uid[1])
	}
	for _, set := range []string{"CapEff", "CapPrm"} {
		if got := procStatus(t, pid, set); got != capEff {
			t.Errorf("attlsd %s: got %s, want %s", set, got, capEff)
		}
	}
	host := "localhost:" + itoa(port)
	out, stderr, code := run(t, "", ip, inNS(curlBin, "-sS", "--max-time", "10", "--cacert", caFile(),
		"--resolve", host+":127.0.0.1", "https://"+host+"/")...)
	if code != 0 {
		t.Fatalf("curl https://%s/ in the namespace: exit %d: %s", host, code, stderr)
	}
	want := "127.0.0.1:" + itoa(port)
	if r := parseDemoReply(t, out); !r.ProxyHeader || r.Destination != want {
		t.Errorf("app saw proxy_header %v destination %q; want true and %s", r.ProxyHeader, r.Destination, want)
	}
}
