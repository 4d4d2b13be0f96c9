// Command peftonnx brings LoRA and prefix tuning to ONNX models.
//
// Usage:
//
//	peftonnx <command> [arguments]
//
// Run "peftonnx help" for the list of commands and "peftonnx <command> -h"
// for one command's flags. Errors go to standard error as one line that
// starts with "peftonnx: ", with exit status 1 (2 for a usage error). No
// command leaves a partial output file behind. A panic, which is a bug,
// is such a line too, with its stack written to a file in the temporary
// folder; so is a fault from a weight file that changes while a command
// reads it.
//
// The CLI is a thin layer over the packages of
// github.com/peftonnx/peftonnx: each command parses its flags, calls the
// Go API and prints the result.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain is main without the exit: execute, then the end of MPI where
// the train command started it.
func runMain(args []string, stdout, stderr io.Writer) int {
	code := execute(args, stdout, stderr)
	if err := finishMPI(); err != nil && code == 0 {
		fmt.Fprintf(stderr, "peftonnx: %s\n", err)
		code = 1
	}
	return code
}

// execute runs the command line args (without the program name), writing
// to stdout and stderr, and returns the exit status. Tests call it
// directly.
func execute(args []string, stdout, stderr io.Writer) int {
	return dispatch(args, stdout, stderr)
}
