package train

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadJSONLIDs(t *testing.T) {
	in := `{"input_ids":[5,6,7],"labels":[-100,6,7]}

{"input_ids":[8,9],"extra":"ignored"}
{"input_ids":[3],"labels":[-100]}`
	d, err := ReadJSONL(strings.NewReader(in), "mem.jsonl", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{
		{InputIDs: []int64{5, 6, 7}, Labels: []int64{-100, 6, 7}, Line: 1},
		{InputIDs: []int64{8, 9}, Labels: []int64{8, 9}, Line: 3},
		{InputIDs: []int64{3}, Labels: []int64{-100}, Line: 4},
	}
	if len(d.Examples) != len(want) {
		t.Fatalf("got %d examples want %d", len(d.Examples), len(want))
	}
	for i, w := range want {
		g := d.Examples[i]
		if !slices.Equal(g.InputIDs, w.InputIDs) || !slices.Equal(g.Labels, w.Labels) || g.Line != w.Line {
			t.Errorf("unexpected result for example %d: got %+v want %+v", i, g, w)
		}
	}
}

func TestReadJSONLText(t *testing.T) {
	tok := loadLlamaTokenizer(t)
	in := `{"text":"Hello world"}
{"src":"Hello","tgt":"world"}`
	d, err := ReadJSONL(strings.NewReader(in), "mem.jsonl", tok)
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{
		{InputIDs: []int64{1, 15043, 3186}, Labels: []int64{1, 15043, 3186}},
		// src "Hello" with BOS, tgt "world" without, then EOS; loss on tgt.
		{InputIDs: []int64{1, 15043, 3186, 2}, Labels: []int64{-100, -100, 3186, 2}},
	}
	for i, w := range want {
		g := d.Examples[i]
		if !slices.Equal(g.InputIDs, w.InputIDs) || !slices.Equal(g.Labels, w.Labels) {
			t.Errorf("unexpected result for example %d: got %v / %v want %v / %v", i, g.InputIDs, g.Labels, w.InputIDs, w.Labels)
		}
	}
}

func TestReadJSONLErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"bad json", "{\"input_ids\":[1]}\n{\"input_ids\":[1,\n", "bad.jsonl:2: invalid JSON"},
		{"trailing value", `{"input_ids":[1]} {"input_ids":[2]}`, "bad.jsonl:1: invalid JSON: more than one value"},
		{"label length", "\n\n{\"input_ids\":[1,2,3],\"labels\":[1,2]}", "bad.jsonl:3: labels has 2 values, input_ids 3"},
		{"float id", `{"input_ids":[1.5]}`, `bad.jsonl:1: field "input_ids"`},
		{"string id", `{"input_ids":["a"]}`, `bad.jsonl:1: field "input_ids": cannot use JSON string`},
		{"negative id", `{"input_ids":[1,-3]}`, "bad.jsonl:1: input_ids[1] is -3"},
		{"bad label", `{"input_ids":[1,2],"labels":[1,-1]}`, "bad.jsonl:1: labels[1] is -1"},
		{"empty ids", `{"input_ids":[]}`, "bad.jsonl:1: empty input_ids"},
		{"text without tokenizer", `{"text":"hi"}`, `bad.jsonl:1: a "text" example needs a tokenizer`},
		{"src without tgt", `{"src":"hi"}`, `bad.jsonl:1: a "src" example needs a "tgt"`},
		{"unknown format", `{"prompt":"hi"}`, `bad.jsonl:1: want "input_ids", "text" or "src"/"tgt"`},
		{"not an object", `[1,2]`, "bad.jsonl:1: "},
		{"empty file", "\n \n", "bad.jsonl: no examples"},
	}
	for i, tt := range tests {
		_, err := ReadJSONL(strings.NewReader(tt.in), "bad.jsonl", nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "train: ") != 1 {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.want)
		}
	}
}

func TestLoadJSONLFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.jsonl")
	if err := os.WriteFile(path, []byte("{\"input_ids\":[1,2]}\n{\"input_ids\":[3,40000]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := LoadJSONL(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckVocab(40001); err != nil {
		t.Errorf("CheckVocab(40001): %v", err)
	}
	err = d.CheckVocab(32000)
	if want := path + ":2: input_ids[1] is 40000, outside the model's vocabulary of 32000"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckVocab(32000): got %v want %q", err, want)
	}
	if _, err := LoadJSONL(filepath.Join(dir, "none.jsonl"), nil); err == nil || !strings.Contains(err.Error(), "none.jsonl: no such file") {
		t.Errorf("missing file: got %v", err)
	}
}
