package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// Set is a group of output files committed together: none is renamed
// into place before all are written and flushed, so that an error while
// writing any of them leaves every destination as it was. The renames
// then happen in the order the files were created; see the package doc
// for what a crash between them leaves.
type Set struct {
	files []*File
}

// Create starts writing one more file of the set; see Create.
func (s *Set) Create(path string, perm os.FileMode) (*File, error) {
	f, err := Create(path, perm)
	if err != nil {
		return nil, err
	}
	s.files = append(s.files, f)
	return f, nil
}

// WriteFile adds a file with content data to the set.
func (s *Set) WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := s.Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// Commit flushes every file, then renames each over its destination and
// flushes their folders. On an error before the first rename, nothing has
// changed and every temporary file is removed.
func (s *Set) Commit() error {
	for _, f := range s.files {
		if err := f.flush(); err != nil {
			s.Abort()
			return err
		}
	}
	dirs := map[string]bool{}
	for _, f := range s.files {
		if err := f.rename(); err != nil {
			s.Abort()
			return err
		}
		dirs[filepath.Dir(f.path)] = true
	}
	var errs []error
	for dir := range dirs {
		errs = append(errs, syncDir(dir))
	}
	return errors.Join(errs...)
}

// Abort removes the temporary files of the set that were not renamed. It
// may be deferred.
func (s *Set) Abort() {
	for _, f := range s.files {
		f.Abort()
	}
}
