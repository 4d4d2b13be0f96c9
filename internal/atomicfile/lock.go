package atomicfile

import (
	"errors"
	"os"
)

// ErrLocked reports that another process holds a folder's lock.
var ErrLocked = errors.New("another process is writing to this folder")

// Lock takes an exclusive lock on the folder dir (flock on the folder
// itself, so that no lock file is left in it) and returns the function
// that releases it. A lock that another process holds is ErrLocked at
// once, not a wait. The lock ends with the process, however it ends.
// Outside Unix, Lock takes no lock.
func Lock(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// CheckWritable reports whether a file can be created at path: it creates
// the temporary file that Create would, and removes it. Commands call it
// for every output before hours of work that would end by failing to
// write.
func CheckWritable(path string) error {
	f, err := Create(path, 0o644)
	if err != nil {
		return err
	}
	f.Abort()
	return nil
}
