package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// A command is one "peftonnx NAME ..." subcommand. Each lives in its own
// file, NAME.go, which registers it from an init function:
//
//	func init() {
//		register(&command{
//			name:    "inspect",
//			args:    "MODEL [--target RE]... [--json]",
//			summary: "show a model's inputs, outputs, ops and linear layers",
//			run:     runInspect,
//		})
//	}
//
// run declares its flags on cx.flags(), parses with cx.parse (which
// handles -h and flags placed after positional arguments), and returns an
// error or nil. It writes results to cx.stdout only.
type command struct {
	name    string
	args    string // the synopsis after "peftonnx NAME"
	summary string // one line for "peftonnx help"
	detail  string // optional paragraphs for "peftonnx NAME -h"
	run     func(cx *context, args []string) error
}

// commands holds the registered commands by name.
var commands = map[string]*command{}

// register adds a command. It panics on a repeated name: two files claim
// the same command.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("peftonnx: command " + c.name + " registered twice")
	}
	commands[c.name] = c
}

// context is what a command runs with.
type context struct {
	cmd            *command
	stdout, stderr io.Writer
	fs             *flag.FlagSet
}

// errHelp reports that -h was given and the help was printed.
var errHelp = errors.New("help requested")

// usageError is a mistake in the command line: exit status 2.
type usageError struct {
	msg string
	err error // the cause, or nil
}

func (e *usageError) Error() string { return e.msg }

func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError for the current command, "NAME: MESSAGE
// (see peftonnx NAME -h)". Operands are wrapped with %w; one that is an
// error of the package the command is named after (combine) is shown
// without that package's prefix, which the command's name already says
// (see package pkgerr).
func (cx *context) usagef(format string, args ...any) error {
	err := pkgerr.Format(cx.cmd.name, format, args...)
	return &usageError{msg: cx.cmd.name + ": " + err.Error() + " (see peftonnx " + cx.cmd.name + " -h)", err: err}
}

// flags returns the command's flag set. Its output is discarded: parse
// reports errors as one line and prints help itself.
func (cx *context) flags() *flag.FlagSet {
	if cx.fs == nil {
		cx.fs = flag.NewFlagSet(cx.cmd.name, flag.ContinueOnError)
		cx.fs.SetOutput(io.Discard)
	}
	return cx.fs
}

// parse parses args with the command's flags and returns the positional
// arguments. Flags may come before, between or after positional arguments
// ("inspect MODEL --json"); everything after "--" is positional. For -h it
// prints the command's help to stdout and returns errHelp.
func (cx *context) parse(args []string) ([]string, error) {
	fs := cx.flags()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				cx.printHelp()
				return nil, errHelp
			}
			return nil, cx.usagef("%w", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// Parse stops at "--" (and drops it) or at the first non-flag.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseOne parses args (parse) for a command that takes exactly one
// positional argument, which what names in the error for any other count
// ("MODEL", "BASE model"), and returns it. The flags in required, spelled
// as the error spells them ("-o OUT", "--adapter"), must not be empty.
func (cx *context) parseOne(args []string, what string, required ...string) (string, error) {
	pos, err := cx.parse(args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", cx.usagef("want one %s, got %d arguments", what, len(pos))
	}
	for _, r := range required {
		name := strings.Fields(strings.TrimLeft(r, "-"))[0]
		if cx.flags().Lookup(name).Value.String() == "" {
			return "", cx.usagef("%s is required", r)
		}
	}
	return pos[0], nil
}

// given returns the names of the flags that the command line set.
func (cx *context) given() map[string]bool {
	given := map[string]bool{}
	cx.flags().Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

// printHelp writes the command's synopsis, summary, detail and flags.
func (cx *context) printHelp() {
	w := cx.stdout
	fmt.Fprintf(w, "usage: peftonnx %s %s\n\n%s\n", cx.cmd.name, cx.cmd.args, capitalize(cx.cmd.summary)+".")
	if cx.cmd.detail != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cx.cmd.detail))
	}
	hasFlags := false
	cx.flags().VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintf(w, "\nflags:\n")
		fs := cx.flags()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// dispatch finds the command named by args[0] and runs it.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && name == "help" {
			return dispatch([]string{args[1], "-h"}, stdout, stderr)
		}
		printUsage(stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		return fail(stderr, &usageError{msg: fmt.Sprintf("unknown command %q (commands: %s; see peftonnx help)", name, strings.Join(commandNames(), ", "))})
	}
	if err := setLimits(os.Getenv); err != nil {
		return fail(stderr, err)
	}
	cx := &context{cmd: c, stdout: stdout, stderr: stderr}
	err := runGuarded(c.name, func() error { return c.run(cx, args[1:]) })
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	}
	return fail(stderr, err)
}

// fail prints err as one line and returns the exit status for it.
func fail(stderr io.Writer, err error) int {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(stderr, "peftonnx: %s\n", msg)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func commandNames() []string {
	return slices.Sorted(maps.Keys(commands))
}

// printUsage writes the list of commands.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, "peftonnx brings LoRA and prefix tuning to ONNX models.\n\nusage: peftonnx <command> [arguments]\n\ncommands:\n")
	width := 0
	for _, n := range commandNames() {
		width = max(width, len(n))
	}
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun \"peftonnx <command> -h\" for a command's flags.\n")
}

// stringList is a flag that may be repeated; each use appends a value.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ", ") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
