package rewrite

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// metadataCases are the injections whose metadata testdata/metadata (as
// main at commit ca84743 wrote it) and testdata/record (as this version
// writes it) hold.
func metadataCases(t *testing.T) []metadataCase {
	llama := func(dt dtype.Type) *graph.Model {
		c := models.LlamaTiny()
		c.DType = dt
		m, err := models.Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fp16 := adapter.DefaultLoRAConfig(`.*v_proj`)
	fp16.DType = dtype.Float16
	return []metadataCase{
		// No dtype in the config: recorded as float32, as before.
		{"lora.json", MetadataKey, func() (*graph.Model, error) {
			m := llama(dtype.Float32)
			_, _, err := InjectLoRA(m, adapter.LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{`.*q_proj`}})
			return m, err
		}},
		{"lora_fp16.json", MetadataKey, func() (*graph.Model, error) {
			m := llama(dtype.Float32)
			_, _, err := InjectLoRA(m, fp16)
			return m, err
		}},
		{"prefix.json", PrefixMetadataKey, func() (*graph.Model, error) {
			m := llama(dtype.Float16)
			_, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2, DType: dtype.BFloat16})
			return m, err
		}},
	}
}

type metadataCase struct {
	file   string
	key    string
	inject func() (*graph.Model, error)
}

// metadataOf runs c's injection and returns the metadata it writes.
func (c metadataCase) metadataOf(t *testing.T) string {
	t.Helper()
	m, err := c.inject()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Proto.MetadataProps {
		if p.Key == c.key {
			return p.Value
		}
	}
	t.Fatalf("no %s metadata", c.key)
	return ""
}

// TestMetadataAsBefore: what this version records equals what main at
// ca84743 recorded, but for the keys of the config, which became
// snake_case (issue 9): the config of the earlier record is compared as
// this version reads and writes it again.
func TestMetadataAsBefore(t *testing.T) {
	for _, tc := range metadataCases(t) {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "metadata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			want := decodeAny(t, string(b)).(map[string]any)
			holder, cfg := want, any(&adapter.LoRAConfig{})
			if tc.key == PrefixMetadataKey {
				holder, cfg = want["site"].(map[string]any), &adapter.PrefixConfig{}
			}
			old, err := json.Marshal(holder["config"])
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(old, cfg); err != nil {
				t.Fatalf("reading the earlier config %s: %v", old, err)
			}
			again, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			holder["config"] = decodeAny(t, string(again))
			got := tc.metadataOf(t)
			if g := decodeAny(t, got); !reflect.DeepEqual(g, want) {
				t.Errorf("metadata %s differs from what main wrote:\ngot  %s\nwant %s", tc.key, got, strings.TrimSpace(string(b)))
			}
		})
	}
}

// TestRecordGolden: a record written now uses the snake_case keys, and
// only those; testdata/record holds them (-update rewrites it).
func TestRecordGolden(t *testing.T) {
	for _, tc := range metadataCases(t) {
		t.Run(tc.file, func(t *testing.T) {
			got := tc.metadataOf(t)
			path := filepath.Join("testdata", "record", tc.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != strings.TrimSpace(string(want)) {
				t.Errorf("metadata %s differs from %s:\ngot  %s\nwant %s", tc.key, path, got, strings.TrimSpace(string(want)))
			}
			for _, old := range []string{`"R":`, `"Alpha":`, `"NumPrefixTokens":`, `"DType":`, `"TargetModules":`} {
				if strings.Contains(got, old) {
					t.Errorf("metadata %s holds the earlier key %s", tc.key, old)
				}
			}
		})
	}
}

// decodeAny decodes JSON into maps, slices and numbers, so that two
// encodings compare equal whatever their key order.
func decodeAny(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
	return v
}

// TestRecordFromBefore reads the records that main wrote and checks their
// element types, which are stored as ONNX numbers.
func TestRecordFromBefore(t *testing.T) {
	read := func(file string, v any) {
		b, err := os.ReadFile(filepath.Join("testdata", "metadata", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	var lora record
	read("lora_fp16.json", &lora)
	if len(lora.Sites) == 0 {
		t.Fatal("lora_fp16.json: no sites")
	}
	for _, s := range lora.Sites {
		if s.DType != dtype.Float16 || s.BaseDType != dtype.Float32 {
			t.Errorf("site %s: dtype %s, base %s; want float16, float32", s.Module, s.DType, s.BaseDType)
		}
	}
	if lora.Config.DType != dtype.Float16 {
		t.Errorf("config dtype %s, want float16", lora.Config.DType)
	}
	var prefix prefixRecord
	read("prefix.json", &prefix)
	if prefix.Site == nil {
		t.Fatal("prefix.json: no site")
	}
	if s := prefix.Site; s.KVDType != dtype.Float16 || s.ParamDType != dtype.BFloat16 || s.Config.DType != dtype.BFloat16 {
		t.Errorf("prefix: kv %s, param %s, config %s; want float16, bfloat16, bfloat16", s.KVDType, s.ParamDType, s.Config.DType)
	}
	b, err := json.Marshal(prefix.Site)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"kv_dtype":10`) || !strings.Contains(string(b), `"param_dtype":16`) {
		t.Errorf("prefix site written as %s; want kv_dtype 10 and param_dtype 16", b)
	}
}
