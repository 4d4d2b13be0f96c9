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
