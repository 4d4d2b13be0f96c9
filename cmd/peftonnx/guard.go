package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

// runGuarded runs a command so that no Go panic reaches the user: a panic
// becomes a one-line error that says it is a bug in peftonnx and where
// its stack was written (a file in the temporary folder, not the
// terminal). Memory faults panic too (debug.SetPanicOnFault, for the
// command's goroutine): a weight file that peftonnx maps into memory and
// that is truncated or rewritten while a command reads it faults
// (SIGBUS), which becomes an error that says an input file changed under
// the command. Deferred clean-ups run as the panic unwinds, so no partial
// output file is left behind.
func runGuarded(name string, run func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		stack := debug.Stack()
		where := writeStack(name, r, stack)
		var fault interface{ Addr() uintptr }
		if e, ok := r.(error); ok && errors.As(e, &fault) {
			err = fmt.Errorf("%s: an input file changed while it was being read: reading memory at %#x faulted, as reading a mapped weight file does once it is truncated or rewritten; run again once nothing else writes to the model's files%s", name, fault.Addr(), where)
			return
		}
		err = fmt.Errorf("%s: internal error, a bug in peftonnx: %v%s; please report it", name, r, where)
	}()
	return run()
}

// stackDir is where writeStack puts its files; the temporary folder
// unless a test sets it.
var stackDir = ""

// writeStack writes a panic's value and stack to a new file and returns
// "(stack in FILE)" for the message, or why it could not.
func writeStack(name string, r any, stack []byte) string {
	dir := stackDir
	if dir == "" {
		dir = os.TempDir()
	}
	// A name of its own (process and time), created exclusively: a
	// report, not an output, so it goes straight to its name.
	path := filepath.Join(dir, fmt.Sprintf("peftonnx-%s-panic-%d-%d.txt", name, os.Getpid(), time.Now().UnixNano()))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Sprintf(" (the stack could not be written: %v)", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "peftonnx %s panicked at %s: %v\n\n%s", name, time.Now().Format(time.RFC3339), r, stack)
	if err != nil {
		return fmt.Sprintf(" (the stack could not be written to %s: %v)", f.Name(), err)
	}
	return fmt.Sprintf(" (stack in %s)", f.Name())
}
