package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// tempInfix is what every temporary name carries after its destination's
// base name: ".NAME.tmp-PID-RANDOM", where PID is the writing process.
const tempInfix = ".tmp-"

// tempBeside returns the folder of dest and the pattern of a temporary for
// dest in it, for os.CreateTemp or os.MkdirTemp, having removed the
// temporaries that ended processes left there for dest (removeStale).
func tempBeside(dest string) (dir, pattern string) {
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	removeStale(dir, base)
	return dir, tempPattern(base)
}

// tempPattern is the os.CreateTemp pattern of a temporary for base.
func tempPattern(base string) string {
	return "." + base + tempInfix + strconv.Itoa(os.Getpid()) + "-*"
}

// File is an output file being written. Write to it as to an *os.File;
// Commit puts it in place and Abort throws it away. A File is not safe for
// concurrent use.
type File struct {
	*os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts writing path with permissions perm (0o644 where perm is 0).
// Nothing appears at path until Commit. A destination that exists and is
// not a regular file is refused before anything is written.
func Create(path string, perm os.FileMode) (*File, error) {
	if perm == 0 {
		perm = 0o644
	}
	if st, err := os.Lstat(path); err == nil && !st.Mode().IsRegular() {
		return nil, &os.PathError{Op: "write", Path: path, Err: errNotRegular}
	}
	dir, pattern := tempBeside(path)
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path, perm: perm}, nil
}

var errNotRegular = errors.New("exists and is not a regular file")

// Path returns the destination of f.
func (f *File) Path() string { return f.path }

// flush syncs and closes the temporary file and gives it its final
// permissions.
func (f *File) flush() error {
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.File.Name(), f.perm)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	return nil
}

// rename moves the flushed temporary file to its destination.
func (f *File) rename() error {
	if err := os.Rename(f.File.Name(), f.path); err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	f.done = true
	return nil
}

// Commit flushes f to disk and renames it over its destination, then
// flushes the folder. On an error the temporary file is removed and the
// destination keeps its old content.
func (f *File) Commit() error {
	if f.done {
		return nil
	}
	err := f.flush()
	if err == nil {
		err = f.rename()
	}
	if err != nil {
		f.Abort()
		return err
	}
	return syncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary file. It does nothing after
// Commit, so it may be deferred.
func (f *File) Abort() {
	if f == nil || f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile writes data to path as one File: path holds either its old
// content or data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// syncDir flushes a folder's entries, so that a rename in it is durable.
// File systems that cannot sync a folder (EINVAL) are not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isSyncUnsupported(err) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// isTemp reports whether name is a temporary name made for some
// destination by this package.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix)
}
