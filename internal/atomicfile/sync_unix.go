//go:build unix

package atomicfile

import (
	"errors"
	"os"
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

// flock takes an exclusive lock on f without waiting: ErrLocked when
// another open file holds one.
func flock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}
