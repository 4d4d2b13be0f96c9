package npy

import "fmt"

// errorf returns an error prefixed with the package name.
func errorf(format string, args ...any) error {
	return fmt.Errorf("npy: "+format, args...)
}

// unwrapPrefix returns the message of err without a leading "npy: ", so
// that errors wrapped with a file name are not prefixed twice.
func unwrapPrefix(err error) string {
	const p = "npy: "
	s := err.Error()
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
