package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Dir is an output folder being filled: files are written into Path, a
// hidden temporary folder beside the destination, and Commit renames it
// into place.
type Dir struct {
	// Path is the temporary folder to write into.
	Path string
	dest string
	done bool
}

// CreateDir starts a folder that Commit puts at dest.
func CreateDir(dest string) (*Dir, error) {
	parent, pattern := tempBeside(filepath.Clean(dest))
	tmp, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Dir{Path: tmp, dest: dest}, nil
}

// WriteFile writes a file named name into the folder, flushed to disk.
func (d *Dir) WriteFile(name string, data []byte, perm os.FileMode) error {
	if perm == 0 {
		perm = 0o644
	}
	path := filepath.Join(d.Path, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(d.dest, name), err)
	}
	return nil
}

// Commit flushes the folder and renames it to its destination, replacing
// a folder that is there (which is removed first: a crash between the two
// steps leaves no folder at dest, and the new one under its temporary
// name).
func (d *Dir) Commit() error {
	if d.done {
		return nil
	}
	if err := syncDir(d.Path); err != nil {
		d.Abort()
		return err
	}
	if err := os.RemoveAll(d.dest); err != nil {
		d.Abort()
		return err
	}
	if err := os.Rename(d.Path, d.dest); err != nil {
		d.Abort()
		return err
	}
	d.done = true
	return syncDir(filepath.Dir(d.dest))
}

// Abort removes the temporary folder unless Commit renamed it. It may be
// deferred.
func (d *Dir) Abort() {
	if d == nil || d.done {
		return
	}
	d.done = true
	os.RemoveAll(d.Path)
}
