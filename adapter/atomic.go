package adapter

import (
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/internal/atomicfile"
)

// writeFilesAtomic writes each file of files (base name → content) into
// dir, creating dir where it is missing, as one atomicfile.Set: no file is
// renamed into place before all are written, so an error leaves every
// target as it was. Targets that exist but are not regular files are
// refused before anything is written.
func writeFilesAtomic(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errorf("%w", err)
	}
	names := sortedKeys(files)
	var set atomicfile.Set
	defer set.Abort()
	for _, name := range names {
		if err := set.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return errorf("%w", err)
		}
	}
	if err := set.Commit(); err != nil {
		return errorf("%w", err)
	}
	return nil
}

// writeFileAtomic writes one file through atomicfile.
func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return errorf("%w", err)
	}
	return nil
}
