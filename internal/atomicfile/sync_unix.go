//go:build unix

package atomicfile

import (
	"errors"
	"syscall"
)

// isSyncUnsupported reports whether err says the file system cannot
// flush a folder.
func isSyncUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP)
}

// processAlive reports whether a process with this number exists (one of
// another user counts: it may be writing).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
