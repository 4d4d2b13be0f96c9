package pickle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/npy"
)

// manifest is what testdata/gen_state_dict.py writes beside a pickle: the
// keys in order and, per array, its dtype, shape and the sha256 of its
// elements in C order, little-endian.
type manifest struct {
	Type   string   `json:"type"`
	Keys   []string `json:"keys"`
	Arrays map[string]struct {
		DType  string  `json:"dtype"`
		Shape  []int64 `json:"shape"`
		SHA256 string  `json:"sha256"`
	} `json:"arrays"`
}

func readManifest(t *testing.T, path string) manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// manifestOf computes the manifest of d the way the Python script does.
func manifestOf(d *Dict) manifest {
	var m manifest
	m.Type = "dict"
	m.Keys = d.Keys()
	m.Arrays = map[string]struct {
		DType  string  `json:"dtype"`
		Shape  []int64 `json:"shape"`
		SHA256 string  `json:"sha256"`
	}{}
	for _, k := range d.Keys() {
		v, _ := d.Get(k)
		a, ok := v.(*npy.Array)
		if !ok {
			continue
		}
		sum := sha256.Sum256(a.Data)
		e := m.Arrays[k]
		e.DType, e.Shape, e.SHA256 = a.DType.String(), a.Shape, hex.EncodeToString(sum[:])
		m.Arrays[k] = e
	}
	return m
}

// checkManifest compares what was decoded with what Python wrote down:
// the same keys in the same order, and every array with the same dtype,
// shape and elements.
func checkManifest(t *testing.T, name string, got *Dict, want manifest) {
	t.Helper()
	m := manifestOf(got)
	if !slices.Equal(m.Keys, want.Keys) {
		t.Errorf("%s: keys %q, want %q", name, m.Keys, want.Keys)
	}
	for k, w := range want.Arrays {
		g, ok := m.Arrays[k]
		switch {
		case !ok:
			v, _ := got.Get(k)
			t.Errorf("%s: %q is %s, want a %s array", name, k, TypeName(v), w.DType)
		case g.DType != w.DType || !slices.Equal(g.Shape, w.Shape):
			t.Errorf("%s: %q is %s %v, want %s %v", name, k, g.DType, g.Shape, w.DType, w.Shape)
		case g.SHA256 != w.SHA256:
			t.Errorf("%s: %q has other elements than Python's (sha256 %s, want %s)", name, k, g.SHA256, w.SHA256)
		}
	}
	for k := range m.Arrays {
		if _, ok := want.Arrays[k]; !ok {
			t.Errorf("%s: %q decoded as an array, Python has no array there", name, k)
		}
	}
}
