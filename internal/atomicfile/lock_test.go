package atomicfile

import (
	"errors"
	"path/filepath"
	"runtime"
	"testing"
)

// TestLock takes a folder's lock twice: the second is ErrLocked at once,
// and the lock can be taken again once released. Nothing is left in the
// folder.
func TestLock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Lock takes no lock outside Unix")
	}
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("second Lock: got %v, want ErrLocked", err)
	}
	unlock()
	unlock, err = Lock(dir)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	unlock()
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("Lock left %q", got)
	}
}

// TestCheckWritable creates nothing, and fails where a file cannot be.
func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := CheckWritable(filepath.Join(dir, "x.json")); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("CheckWritable left %q", got)
	}
	if err := CheckWritable(filepath.Join(dir, "missing", "x.json")); err == nil {
		t.Error("a missing folder: got no error")
	}
}
