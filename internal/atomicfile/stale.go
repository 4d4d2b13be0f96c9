package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
)

// Stale returns the temporary files and folders that this package made in
// dir for the destination named base and that were never committed or
// aborted: what a killed process leaves behind. With base "" it returns
// those of every destination in dir.
func Stale(dir, base string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, e := range entries {
		name := e.Name()
		if !isTemp(name) {
			continue
		}
		if base != "" && !strings.HasPrefix(name, "."+base+tempInfix) {
			continue
		}
		stale = append(stale, filepath.Join(dir, name))
	}
	return stale, nil
}
