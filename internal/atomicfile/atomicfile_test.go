package atomicfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entries lists the names in dir, hidden ones included.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestFileCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new content")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("before Commit the destination holds %q, want %q", got, "old")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // after Commit: a no-op
	if got := readFile(t, path); got != "new content" {
		t.Errorf("after Commit: got %q, want %q", got, "new content")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o640 {
		t.Errorf("permissions: got %o, want 640", got)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"out.bin"}) {
		t.Errorf("folder holds %v, want only out.bin", got)
	}
}

func TestFileAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	f, err := Create(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	if stale, _ := Stale(dir, "out.bin"); len(stale) != 1 {
		t.Errorf("Stale while writing: got %v, want the one temporary file", stale)
	}
	f.Abort()
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("after Abort the folder holds %v, want nothing", got)
	}
}

func TestCreateRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(sub, []byte("x"), 0); err == nil {
		t.Fatal("WriteFile over a folder: no error")
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("x"), 0); err == nil {
		t.Fatal("WriteFile over a symlink: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "target")); !os.IsNotExist(err) {
		t.Errorf("the symlink's target was written: %v", err)
	}
}

func TestCreateMissingFolder(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "missing", "out"), nil, 0)
	if !os.IsNotExist(err) {
		t.Errorf("got %v, want an error that is fs.ErrNotExist", err)
	}
}

func TestSet(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("old a"), 0o644)
	os.WriteFile(b, []byte("old b"), 0o644)

	// An error while the set is written leaves both as they were.
	var s Set
	if err := s.WriteFile(a, []byte("new a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(filepath.Join(dir, "missing", "c"), 0); err == nil {
		t.Fatal("Create in a missing folder: no error")
	}
	s.Abort()
	if got := readFile(t, a) + "," + readFile(t, b); got != "old a,old b" {
		t.Errorf("after an aborted set: got %q, want %q", got, "old a,old b")
	}

	var s2 Set
	s2.WriteFile(a, []byte("new a"), 0)
	s2.WriteFile(b, []byte("new b"), 0)
	if err := s2.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, a) + "," + readFile(t, b); got != "new a,new b" {
		t.Errorf("after Commit: got %q, want %q", got, "new a,new b")
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("folder holds %v, want a and b only", got)
	}
}

func TestDir(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "checkpoint-3")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dest, "old"), nil, 0o644)

	d, err := CreateDir(dest)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("state.json", []byte("{}"), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	d.Abort()
	if got := entries(t, dest); !slices.Equal(got, []string{"state.json"}) {
		t.Errorf("committed folder holds %v, want state.json only", got)
	}
	if got := entries(t, parent); !slices.Equal(got, []string{"checkpoint-3"}) {
		t.Errorf("parent holds %v, want checkpoint-3 only", got)
	}
	st, _ := os.Stat(dest)
	if got := st.Mode().Perm(); got != 0o755 {
		t.Errorf("folder permissions: got %o, want 755", got)
	}

	d2, err := CreateDir(filepath.Join(parent, "checkpoint-4"))
	if err != nil {
		t.Fatal(err)
	}
	d2.WriteFile("x", nil, 0)
	if stale, _ := Stale(parent, ""); len(stale) != 1 {
		t.Errorf("Stale: got %v, want the one staging folder", stale)
	}
	d2.Abort()
	if got := entries(t, parent); !slices.Equal(got, []string{"checkpoint-3"}) {
		t.Errorf("after Abort the parent holds %v, want checkpoint-3 only", got)
	}
}

func TestStale(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"model.onnx", ".model.onnx.tmp-123", ".model.onnx.data.tmp-9", ".hidden", "x.tmp-1"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o644)
	}
	for _, c := range []struct {
		base string
		want []string
	}{
		{"model.onnx", []string{".model.onnx.tmp-123"}},
		{"model.onnx.data", []string{".model.onnx.data.tmp-9"}},
		{"", []string{".model.onnx.data.tmp-9", ".model.onnx.tmp-123"}},
	} {
		got, err := Stale(dir, c.base)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i] = filepath.Base(got[i])
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("Stale(%q): got %v, want %v", c.base, got, c.want)
		}
	}
}

// deadPID returns the number of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a process to get a dead process number: %v", err)
	}
	return cmd.Process.Pid
}

// TestCreateRemovesStale: the temporaries that a killed process left for
// a destination are removed by the next write of it; those of running
// processes stay (issue 16 D3: killed saves left 71 to 287 MB behind).
func TestCreateRemovesStale(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, ".out.bin.tmp-"+strconv.Itoa(deadPID(t))+"-123")
	live := filepath.Join(dir, ".out.bin.tmp-"+strconv.Itoa(os.Getpid())+"-456")
	other := filepath.Join(dir, ".other.bin.tmp-"+strconv.Itoa(deadPID(t))+"-789")
	old := filepath.Join(dir, ".out.bin.tmp-1234567") // an older version's name
	deadDir := filepath.Join(dir, ".out.bin.tmp-"+strconv.Itoa(deadPID(t))+"-42")
	for _, p := range []string{dead, live, other, old} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(deadDir, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "out.bin"), []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		gone bool
	}{{dead, true}, {deadDir, true}, {live, false}, {other, false}, {old, false}} {
		_, err := os.Stat(c.path)
		if gone := os.IsNotExist(err); gone != c.gone {
			t.Errorf("%s: gone %v, want %v", filepath.Base(c.path), gone, c.gone)
		}
	}
}
