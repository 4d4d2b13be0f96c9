package atomicfile

import (
	"os"
	"path/filepath"
	"strconv"
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

// removeStale removes the temporaries for base in dir whose writing
// process has ended without committing or aborting them: what a process
// killed while it saved leaves behind. Temporaries of processes that are
// still running, and names without a process number (older versions), are
// left alone. Errors are ignored: cleaning up is a courtesy.
func removeStale(dir, base string) {
	stale, err := Stale(dir, base)
	if err != nil {
		return
	}
	for _, path := range stale {
		rest := strings.TrimPrefix(filepath.Base(path), "."+base+tempInfix)
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		os.RemoveAll(path)
	}
}
