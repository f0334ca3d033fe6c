package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat times; 100 on Linux.
const clockTick = 100

// tree returns root and every process below it: HAProxy and hitch may
// run their work in child processes.
func tree(root int) []int {
	parent := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		f := statFields(s)
		if len(f) > 1 {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			ppid, _ := strconv.Atoi(f[1])
			parent[ppid] = append(parent[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, parent[out[i]]...)
	}
	return out
}

// statFields returns the fields of a /proc stat file after the command
// name, which may hold spaces: field 0 is the state.
func statFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}

// cpuSeconds is the user and system CPU time of root's process tree.
func cpuSeconds(root int) float64 {
	if root == 0 {
		return 0
	}
	var ticks int64
	for _, pid := range tree(root) {
		f := statFields("/proc/" + strconv.Itoa(pid) + "/stat")
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return float64(ticks) / clockTick
}

// rssBytes is the resident memory of root's process tree.
func rssBytes(root int) int64 {
	var total int64
	for _, pid := range tree(root) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}
