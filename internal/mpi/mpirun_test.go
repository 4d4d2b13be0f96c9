//go:build mpi

package mpi

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of the MPI build run twice: the go test process (the parent)
// starts mpirun on its own test binary with rankTestEnv set, and each rank
// then runs the one test the parent named, against world.

// rankTestEnv, set in a rank's environment, names the test it runs.
const rankTestEnv = "PEFTONNX_MPI_TEST"

// world is the world communicator of a rank; nil in the parent.
var world *Comm

func TestMain(m *testing.M) {
	if os.Getenv(rankTestEnv) == "" {
		os.Exit(m.Run())
	}
	flag.Parse()
	w, err := Init()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	world = w
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" && w.Rank() != 0 {
		// Every rank runs the benchmark; rank 0 alone reports it.
		if devnull, err := os.Open(os.DevNull); err == nil {
			os.Stdout = devnull
		}
	}
	code := m.Run()
	if code != 0 {
		// The other ranks may wait in a collective this rank skipped.
		Abort(code)
	}
	if err := Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

// onRank reports whether this process is a rank that mpirun started, as
// opposed to the parent.
func onRank() bool { return world != nil }

// job is one mpirun of the test binary.
type job struct {
	np      int
	args    []string      // mpirun arguments beyond the common ones
	env     []string      // environment beyond the parent's, KEY=VALUE
	wrap    []string      // a command that runs mpirun, such as ip netns exec
	timeout time.Duration // 0: 60s
}

// loopbackOnly keeps mpirun's own traffic (the out-of-band channel) on the
// loopback interface; shared memory and self carry the ranks' messages.
var loopbackOnly = []string{"--mca", "oob_tcp_if_include", "lo", "--mca", "btl", "self,vader"}

// tcpLoopback carries the ranks' messages over TCP on the loopback
// interface, which Open MPI's tcp transport leaves out unless told.
var tcpLoopback = []string{"--mca", "oob_tcp_if_include", "lo", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"}

// mpirun returns the path of mpirun, or skips t when it is not installed.
func mpirun(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not installed (Debian: apt-get install openmpi-bin); make test installs it where it can")
	}
	return path
}

// run starts j.np ranks of this test binary, each running test, and
// returns their tagged output, how long mpirun took and its error.
func (j job) run(t *testing.T, test string) (out string, took time.Duration, err error) {
	t.Helper()
	timeout := j.timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	argv := append([]string{}, j.wrap...)
	argv = append(argv, mpirun(t), "--oversubscribe", "--bind-to", "none", "--tag-output",
		"-np", fmt.Sprint(j.np), "--mca", "pml", "ob1")
	argv = append(argv, j.args...)
	argv = append(argv, os.Args[0], "-test.run", "^"+test+"$", "-test.v", "-test.timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// mpirun stops its ranks on SIGTERM; SIGKILL would leave them behind.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), rankTestEnv+"="+test,
		"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	cmd.Env = append(cmd.Env, j.env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err = cmd.Run()
	return buf.String(), time.Since(start), err
}

// pass runs test on j.np ranks and fails t unless mpirun succeeds and
// every rank reports the test passed.
func (j job) pass(t *testing.T, test string) string {
	t.Helper()
	out, took, err := j.run(t, test)
	passes := len(regexp.MustCompile(`(?m)<stdout>:--- PASS: `+test+` `).FindAllString(out, -1))
	if err != nil || passes != j.np {
		t.Fatalf("mpirun -np %d %s: %v after %v; got %d ranks passing, want %d; output:\n%s", j.np, test, err, took.Round(time.Millisecond), passes, j.np, out)
	}
	t.Logf("%d ranks passed %s in %v", j.np, test, took.Round(time.Millisecond))
	return out
}

// rankLines returns the lines that rank wrote to stdout, without their
// tag.
func rankLines(out string, rank int) []string {
	tag := fmt.Sprintf("[1,%d]<stdout>:", rank)
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, tag); ok {
			lines = append(lines, rest)
		}
	}
	return lines
}
