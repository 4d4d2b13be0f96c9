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

// The files in testdata/metadata hold the metadata that main at commit
// ca84743, before package dtype, wrote for the injections below.
func TestMetadataAsBefore(t *testing.T) {
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
	tests := []struct {
		file   string
		key    string
		inject func() (*graph.Model, error)
	}{
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
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "metadata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := tc.inject()
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, p := range m.Proto.MetadataProps {
				if p.Key == tc.key {
					got = p.Value
				}
			}
			if g, w := decodeAny(t, got), decodeAny(t, string(want)); !reflect.DeepEqual(g, w) {
				t.Errorf("metadata %s differs from what main wrote:\ngot  %s\nwant %s", tc.key, got, strings.TrimSpace(string(want)))
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
