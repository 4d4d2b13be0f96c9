//go:build mpi

package mpi

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// failEnv tells the ranks of TestFailingRankEndsJob how rank 1 fails;
// pidDirEnv names the folder where every rank writes its process id.
const (
	failEnv   = "PEFTONNX_MPI_TEST_FAIL"
	pidDirEnv = "PEFTONNX_MPI_TEST_PIDS"
)

// TestFailingRankEndsJob has rank 1 fail while rank 0 waits, in MPI or in
// Go, for far longer than the test allows, and checks that mpirun ends
// with a non-zero status within seconds and no rank is left running.
func TestFailingRankEndsJob(t *testing.T) {
	if onRank() {
		failingRank(t)
		return
	}
	// mpirun prints exitedAlone when a rank ends without MPI_Abort. Its
	// report of an MPI_Abort ("MPI_ABORT was invoked on rank 1") is not
	// checked: Open MPI 4.1 loses it in about one run of five, when the
	// aborting rank dies before its message is through (mpirun then logs
	// "ORTE_ERROR_LOG: ... show_help.c").
	const exitedAlone = "mpirun detected that one or more processes exited with non-zero status"
	tests := []struct {
		fail      string
		wantCode  int      // mpirun's exit status
		wantOut   []string // in mpirun's output
		wantAbort bool     // rank 1 ended through MPI_Abort
	}{
		// Rank 1 aborts while its MPI thread is blocked in a broadcast
		// that rank 0, asleep in Go, never joins.
		{fail: "abort", wantCode: 3, wantAbort: true},
		// Rank 1 panics under AbortOnPanic while rank 0 waits in a barrier.
		{fail: "panic", wantCode: 2, wantAbort: true, wantOut: []string{"[1,1]<stderr>:panic: rank 1 fails on purpose"}},
		// Rank 1 exits without Abort while rank 0 waits in a barrier:
		// mpirun notices by itself.
		{fail: "exit", wantCode: 3, wantOut: []string{exitedAlone}},
	}
	for _, tt := range tests {
		t.Run(tt.fail, func(t *testing.T) {
			pids := t.TempDir()
			j := job{np: 2, args: loopbackOnly, env: []string{failEnv + "=" + tt.fail, pidDirEnv + "=" + pids}}
			out, took, err := j.run(t, "TestFailingRankEndsJob")
			t.Logf("mpirun ended after %v: %v", took.Round(time.Millisecond), err)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.wantCode {
				t.Errorf("mpirun: got %v, want exit status %d; output:\n%s", err, tt.wantCode, out)
			}
			if took > 10*time.Second {
				t.Errorf("mpirun took %v to end the job, want a few seconds", took)
			}
			if tt.wantAbort && strings.Contains(out, exitedAlone) {
				t.Errorf("rank 1 exited without MPI_Abort:\n%s", out)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for rank := range 2 {
				pid := readPid(t, filepath.Join(pids, strconv.Itoa(rank)))
				if alive(pid) {
					t.Errorf("rank %d (pid %d) still runs after mpirun ended", rank, pid)
				}
			}
		})
	}
}

// failingRank is the ranks' side of TestFailingRankEndsJob.
func failingRank(t *testing.T) {
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(os.Getenv(pidDirEnv), strconv.Itoa(world.Rank())), pid, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := world.Barrier(); err != nil {
		t.Fatal(err)
	}
	fail := os.Getenv(failEnv)
	if world.Rank() == 0 {
		if fail == "abort" {
			time.Sleep(time.Minute)
		} else {
			_ = world.Barrier()
		}
		t.Errorf("rank 0 outlived rank 1's %s", fail)
		return
	}
	switch fail {
	case "abort":
		go func() { _ = world.BroadcastBytes(make([]byte, 16), 0) }()
		time.Sleep(200 * time.Millisecond)
		Abort(3)
	case "panic":
		defer AbortOnPanic()
		panic("rank 1 fails on purpose")
	case "exit":
		os.Exit(3)
	}
	t.Errorf("rank 1 outlived its own %s", fail)
}

// readPid reads the process id a rank wrote.
func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the rank wrote no pid: %v", err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesized command name.
	_, rest, ok := strings.Cut(string(stat), ") ")
	return ok && !strings.HasPrefix(rest, "Z")
}
