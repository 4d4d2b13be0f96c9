package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestFindLibraryEnv(t *testing.T) {
	bogus := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	t.Setenv(rt.LibraryEnv, bogus)
	_, err := rt.FindLibrary()
	if err == nil || !strings.Contains(err.Error(), rt.LibraryEnv) || !strings.Contains(err.Error(), bogus) {
		t.Errorf("missing library in %s: got %v, want an error naming the variable and the path", rt.LibraryEnv, err)
	}
	if err := os.WriteFile(bogus, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := rt.FindLibrary()
	if err != nil || got != bogus {
		t.Errorf("FindLibrary with %s set: got %q, %v, want %q", rt.LibraryEnv, got, err, bogus)
	}
}

func TestFindLibrarySearchesUpward(t *testing.T) {
	t.Setenv(rt.LibraryEnv, "")
	root := t.TempDir()
	lib := filepath.Join(root, ".ort", "libonnxruntime.so.1")
	deep := filepath.Join(root, "a", "b", "c")
	for _, dir := range []string{filepath.Dir(lib), deep} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(deep)
	got, err := rt.FindLibrary()
	if err != nil {
		t.Fatal(err)
	}
	if real, _ := filepath.EvalSymlinks(got); real != mustEval(t, lib) {
		t.Errorf("FindLibrary from %s: got %q, want %q", deep, got, lib)
	}
}

func TestFindLibraryNotFound(t *testing.T) {
	t.Setenv(rt.LibraryEnv, "")
	t.Chdir(t.TempDir())
	got, err := rt.FindLibrary()
	if err == nil {
		// The test binary's own directory has a library above it.
		t.Skipf("found %s by searching from the executable", got)
	}
	if !errors.Is(err, rt.ErrLibraryNotFound) {
		t.Errorf("got %v, want ErrLibraryNotFound", err)
	}
	want := "runtime: ONNX Runtime library not found (set ONNXRUNTIME_LIB or run scripts/fetch-ort.sh)"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func mustEval(t *testing.T, p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInitTwice(t *testing.T) {
	requireORT(t)
	if err := rt.Init(); err != nil {
		t.Errorf("second Init: %v", err)
	}
	if err := rt.Init(rt.WithLibrary(rt.LibraryPath())); err != nil {
		t.Errorf("Init with the loaded library: %v", err)
	}
	other := filepath.Join(t.TempDir(), "libother.so")
	os.WriteFile(other, nil, 0o644)
	err := rt.Init(rt.WithLibrary(other))
	if err == nil || !strings.Contains(err.Error(), "already loaded") {
		t.Errorf("Init with another library: got %v, want an error", err)
	}
	if v := rt.Version(); !strings.HasPrefix(v, "1.") {
		t.Errorf("Version = %q, want 1.x", v)
	}
}
