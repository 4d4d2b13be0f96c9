package graph_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// rssFileKB returns the process's resident file-backed memory.
func rssFileKB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "RssFile:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleasePages: the read pages of a 16 MiB external tensor leave the
// resident memory, and the tensor reads the same after; inline data and a
// file not yet mapped are left alone.
func TestReleasePages(t *testing.T) {
	m := chain()
	vals := make([]float32, 4<<20)
	for i := range vals {
		vals[i] = float32(i % 1000)
	}
	m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{int64(len(vals))}, vals))
	if err := m.ReleasePages(m.Initializer("w")); err != nil {
		t.Fatalf("inline: %v", err)
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	w := loaded.Initializer("w")
	if err := loaded.ReleasePages(w); err != nil {
		t.Fatalf("not mapped yet: %v", err)
	}
	before := rssFileKB(t)
	got, err := loaded.Float32s(w)
	if err != nil || !slices.Equal(got, vals) {
		t.Fatalf("read: %v", err)
	}
	read := rssFileKB(t)
	if err := loaded.ReleasePages(w); err != nil {
		t.Fatal(err)
	}
	released := rssFileKB(t)
	if read-before < 8<<10 || read-released < 8<<10 {
		t.Errorf("RssFile %d kB before reading, %d kB after, %d kB after ReleasePages: want the 16 MiB read in, then out", before, read, released)
	}
	if got, err = loaded.Float32s(w); err != nil || !slices.Equal(got, vals) {
		t.Fatalf("read after ReleasePages: %v", err)
	}
}
