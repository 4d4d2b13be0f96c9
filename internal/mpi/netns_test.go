//go:build mpi

package mpi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// netnsPayload is the number of float32 values each rank of
// TestTCPBetweenNetworkNamespaces all-reduces: 4 MiB, which must cross the
// virtual link between the namespaces.
const netnsPayload = 1 << 20

// TestTCPBetweenNetworkNamespaces runs two ranks in two network
// namespaces joined by a virtual Ethernet pair, as if on two machines:
// mpirun starts in the first, and reaches the second through a launch
// agent that stands in for ssh. It checks that each rank ran in its own
// namespace, that MPI saw them on different machines, that the
// collectives are right, and that their bytes crossed the link.
func TestTCPBetweenNetworkNamespaces(t *testing.T) {
	if onRank() {
		namespaceRank(t)
		return
	}
	mpirun(t)
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespaces need iproute2's ip (Debian: apt-get install iproute2)")
	}
	hosts := newVethPair(t)
	dir := t.TempDir()
	agent := filepath.Join(dir, "netns-agent")
	script := fmt.Sprintf(`#!/bin/sh
# Stands in for ssh: runs the command mpirun gives for host $1 in that
# host's network namespace.
host=$1; shift
case $host in
%s) ns=%s ;;
%s) ns=%s ;;
*) echo "netns-agent: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" sh -c "$*"
`, hosts[0].addr, hosts[0].ns, hosts[1].addr, hosts[1].ns)
	hostfile := filepath.Join(dir, "hostfile")
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostfile, []byte(hosts[0].addr+" slots=1\n"+hosts[1].addr+" slots=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var before [2]int64
	for i, h := range hosts {
		before[i] = h.txBytes(t)
	}
	j := job{
		np:   2,
		wrap: []string{"ip", "netns", "exec", hosts[0].ns},
		args: []string{"--hostfile", hostfile, "--mca", "plm_rsh_agent", agent,
			"--mca", "oob_tcp_if_include", vethSubnet, "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", vethSubnet},
	}
	out := j.pass(t, "TestTCPBetweenNetworkNamespaces")
	for rank, h := range hosts {
		want := "netns " + h.netnsID(t)
		if lines := rankLines(out, rank); !slices.Contains(lines, want) {
			t.Errorf("rank %d: got lines %q, want %q, the namespace of %s", rank, lines, want, h.addr)
		}
		sent := h.txBytes(t) - before[rank]
		t.Logf("%s (%s) sent %d bytes", h.veth, h.ns, sent)
		if sent < 4*netnsPayload/2 {
			t.Errorf("%s sent %d bytes, want at least half the %d-byte all-reduce", h.veth, sent, 4*netnsPayload)
		}
	}
}

// namespaceRank is the ranks' side of TestTCPBetweenNetworkNamespaces.
func namespaceRank(t *testing.T) {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("netns %s\n", ns)
	if world.Size() != 2 || world.LocalSize() != 1 {
		t.Errorf("world: got %d ranks, %d on this machine; want 2 ranks on two machines", world.Size(), world.LocalSize())
	}
	buf := make([]float32, netnsPayload)
	for i := range buf {
		buf[i] = float32((world.Rank() + 1) * (i % 1000))
	}
	if err := world.AllReduceSumFloat32(buf); err != nil {
		t.Fatal(err)
	}
	for i, got := range buf {
		if want := float32(3 * (i % 1000)); got != want {
			t.Fatalf("allreduce element %d: got %v, want %v", i, got, want)
		}
	}
	recv := make([]float32, 2)
	if err := world.AllGatherFloat32([]float32{float32(world.Rank() + 10)}, recv); err != nil {
		t.Fatal(err)
	}
	if recv[0] != 10 || recv[1] != 11 {
		t.Errorf("allgather: got %v, want [10 11]", recv)
	}
	if err := world.Barrier(); err != nil {
		t.Fatal(err)
	}
}

// vethSubnet is the subnet of the virtual link. Each namespace has its own
// addresses, so tests running at once do not clash.
const vethSubnet = "10.251.7.0/24"

// nsHost is one end of the virtual link: a network namespace, its end of
// the pair and its address.
type nsHost struct{ ns, veth, addr string }

// newVethPair makes two network namespaces joined by a veth pair, removed
// when t ends, or skips t when the system refuses.
func newVethPair(t *testing.T) [2]nsHost {
	t.Helper()
	prefix := fmt.Sprintf("peftonnx-mpi-%d", os.Getpid())
	hosts := [2]nsHost{
		{ns: prefix + "-a", veth: "veth-a", addr: "10.251.7.1"},
		{ns: prefix + "-b", veth: "veth-b", addr: "10.251.7.2"},
	}
	for _, h := range hosts {
		if out, err := exec.Command("ip", "netns", "add", h.ns).CombinedOutput(); err != nil {
			t.Skipf("cannot make a network namespace here: ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", h.ns, err, out)
			}
		})
	}
	steps := [][]string{
		{"link", "add", hosts[0].veth, "netns", hosts[0].ns, "type", "veth", "peer", "name", hosts[1].veth, "netns", hosts[1].ns},
	}
	for _, h := range hosts {
		steps = append(steps,
			[]string{"-n", h.ns, "addr", "add", h.addr + "/24", "dev", h.veth},
			[]string{"-n", h.ns, "link", "set", h.veth, "up"},
			[]string{"-n", h.ns, "link", "set", "lo", "up"})
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Skipf("cannot join the namespaces: ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return hosts
}

// txBytes returns how many bytes h's end of the link has sent.
func (h nsHost) txBytes(t *testing.T) int64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.ns, "cat", "/sys/class/net/"+h.veth+"/statistics/tx_bytes").Output()
	if err != nil {
		t.Fatalf("reading %s's counters in %s: %v", h.veth, h.ns, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s's tx_bytes: %v", h.veth, err)
	}
	return n
}

// netnsID returns h's namespace as /proc/<pid>/ns/net names it.
func (h nsHost) netnsID(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.ns, "readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatalf("reading the id of %s: %v", h.ns, err)
	}
	return strings.TrimSpace(string(out))
}
