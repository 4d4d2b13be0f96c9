package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A side is one of the two implementations being compared.
type side string

const (
	sidePeft  side = "peftonnx"
	sideTorch side = "pytorch"
)

// worker is a running worker process, Go or PyTorch, that answers one JSON
// line per command line. Each side runs in its own process so that its
// peak RSS is its own.
type worker struct {
	side  side
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	Ready map[string]any
}

// env holds what it takes to start workers.
type env struct {
	python  string // the Python that has torch
	script  string // bench/torch_llama.py
	self    string // this program, for Go workers
	threads int
}

// start launches the worker of side s for mode on the export folder dir,
// and waits until it is ready.
func (e env) start(s side, dir, mode string, batch int) (*worker, error) {
	args := func(mode string) []string {
		return []string{"worker", "--dir", dir, "--mode", mode, "--batch", strconv.Itoa(batch), "--threads", strconv.Itoa(e.threads)}
	}
	var cmd *exec.Cmd
	switch {
	case s == sidePeft:
		cmd = exec.Command(e.self, args(mode)...)
	default:
		// PyTorch has one LoRA step, and float32 only (torchMode).
		cmd = exec.Command(e.python, append([]string{e.script}, args(torchMode(mode))...)...)
	}
	// Each side gets the same thread count; neither library's own default
	// (all cores, or OMP_NUM_THREADS) decides.
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS="+strconv.Itoa(e.threads), "OPENBLAS_NUM_THREADS="+strconv.Itoa(e.threads))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("peftbench: starting the %s worker: %w", s, err)
	}
	w := &worker{side: s, cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<16)}
	ready, err := w.read()
	if err != nil {
		w.kill()
		return nil, fmt.Errorf("peftbench: %s worker (%s, %s): %w", s, mode, dir, err)
	}
	w.Ready = ready
	return w, nil
}

// errDied is wrapped by the error of a worker that exited while it was
// expected to answer: it crashed, or the kernel killed it for memory.
var errDied = errors.New("worker died")

// read reads one JSON reply.
func (w *worker) read() (map[string]any, error) {
	line, err := w.out.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: %s", errDied, w.exitState())
		}
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		return nil, fmt.Errorf("bad reply %q: %w", strings.TrimSpace(line), err)
	}
	if e, ok := v["error"]; ok {
		return nil, fmt.Errorf("%v", e)
	}
	return v, nil
}

// call sends command c and returns the reply.
func (w *worker) call(c string) (map[string]any, error) {
	if _, err := io.WriteString(w.in, c+"\n"); err != nil {
		return nil, fmt.Errorf("peftbench: %s worker: %w", w.side, err)
	}
	v, err := w.read()
	if err != nil {
		return nil, fmt.Errorf("peftbench: %s worker: %s: %w", w.side, c, err)
	}
	return v, nil
}

// step runs one step and returns its wall and CPU times in milliseconds
// and the value the worker reports (the loss, or a logit).
func (w *worker) step() (ms, cpuMS, value float64, err error) {
	v, err := w.call("step")
	if err != nil {
		return 0, 0, 0, err
	}
	return num(v["ms"]), num(v["cpu_ms"]), num(v["value"]), nil
}

// stop asks the worker to quit and waits for it, killing it after a while.
func (w *worker) stop() {
	io.WriteString(w.in, "quit\n")
	w.in.Close()
	if w.cmd.ProcessState != nil {
		return // exitState has waited for it
	}
	done := make(chan struct{})
	go func() { w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		w.kill()
		<-done
	}
}

// exitState waits for a worker whose output has ended and says how it
// ended.
func (w *worker) exitState() string {
	err := w.cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			if st.Signal() == syscall.SIGKILL {
				return "killed by SIGKILL (out of memory?)"
			}
			return "killed by " + st.Signal().String()
		}
		return fmt.Sprintf("exited with status %d (see its messages above)", ee.ExitCode())
	}
	return "exited (see its messages above)"
}

func (w *worker) kill() {
	if w.cmd.Process != nil {
		w.cmd.Process.Kill()
	}
}

// num reads a JSON number.
func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// str reads a JSON string.
func str(v any) string {
	s, _ := v.(string)
	return s
}
