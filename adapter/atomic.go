package adapter

import (
	"os"
	"path/filepath"
	"sort"
)

// writeFilesAtomic writes each file of files (base name → content) into
// dir. Every file is first written in full to a temporary file in dir and
// synced; only when all are written are they renamed into place, so an
// error leaves no partial file behind and each target is either its old
// self or its new self. Targets that exist but are not regular files are
// refused before anything is written.
func writeFilesAtomic(dir string, files map[string][]byte) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errorf("%w", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && !st.Mode().IsRegular() {
			return errorf("%s is not a regular file", filepath.Join(dir, name))
		}
		names = append(names, name)
	}
	sort.Strings(names)
	temps := make([]string, 0, len(names))
	defer func() {
		if err != nil {
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	for _, name := range names {
		tmp, err := writeTemp(dir, name, files[name])
		if tmp != "" {
			temps = append(temps, tmp)
		}
		if err != nil {
			return err
		}
	}
	for i, name := range names {
		if err := os.Rename(temps[i], filepath.Join(dir, name)); err != nil {
			return errorf("%w", err)
		}
	}
	temps = temps[:0]
	syncDir(dir)
	return nil
}

// writeFileAtomic writes one file through a temporary file in its directory.
func writeFileAtomic(path string, data []byte) error {
	return writeFilesAtomic(filepath.Dir(path), map[string][]byte{filepath.Base(path): data})
}

func writeTemp(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", errorf("%w", err)
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return tmp, errorf("writing %s: %v", filepath.Join(dir, name), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return tmp, errorf("writing %s: %v", filepath.Join(dir, name), err)
	}
	if err := f.Close(); err != nil {
		return tmp, errorf("writing %s: %v", filepath.Join(dir, name), err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return tmp, errorf("%w", err)
	}
	return tmp, nil
}

// syncDir makes the renames durable where the platform allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
