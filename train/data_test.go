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

func TestReadJSONLTargets(t *testing.T) {
	in := `{"input_ids":[5,6],"label":1}
{"input_ids":[7],"label":-100,"target":[0.5,-2]}`
	d, err := ReadJSONL(strings.NewReader(in), "mem.jsonl", nil)
	if err != nil {
		t.Fatal(err)
	}
	g0, g1 := d.Examples[0], d.Examples[1]
	if !g0.HasLabel || g0.Label != 1 || g0.Target != nil {
		t.Errorf("unexpected result for example 0: got %+v", g0)
	}
	if !g1.HasLabel || g1.Label != IgnoreIndex || !slices.Equal(g1.Target, []float32{0.5, -2}) {
		t.Errorf("unexpected result for example 1: got %+v", g1)
	}
	b := Collate(d.Examples, 0, 0, false)
	if !slices.Equal(b.Classes, []int64{1, IgnoreIndex}) || b.Targets != nil {
		t.Errorf("collated classes %v and targets %v, want [1 -100] and none (a target is missing)", b.Classes, b.Targets)
	}
	if n := b.scored(SequenceClassification); n != 1 {
		t.Errorf("a classifier scores %d examples, want 1", n)
	}
}

func TestCheckTasks(t *testing.T) {
	d := &Dataset{Path: "d.jsonl", Examples: []Example{
		{InputIDs: []int64{1}, Label: 1, HasLabel: true, Target: []float32{1, 2}, Line: 1},
		{InputIDs: []int64{1}, Label: 4, HasLabel: true, Target: []float32{1, 2, 3}, Line: 2},
		{InputIDs: []int64{1}, Line: 3},
	}}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"class out of range", d.checkClasses(3), "d.jsonl:2: label 4 is outside the model's 3 classes"},
		{"no class", (&Dataset{Path: "d.jsonl", Examples: d.Examples[2:]}).checkClasses(3), `d.jsonl:3: no "label"`},
		{"target size", d.checkTargets("y", 2), `d.jsonl:2: target has 3 values, the output "y" has 2 per example`},
		{"uneven targets", d.checkTargets("y", 0), "d.jsonl:2: target has 3 values, line 1's has 2"},
		{"no target", (&Dataset{Path: "d.jsonl", Examples: d.Examples[2:]}).checkTargets("y", 0), `d.jsonl:3: no "target"`},
	}
	for i, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, tt.err, tt.want)
		}
	}
	if err := (&Dataset{Path: "d.jsonl", Examples: d.Examples[:2]}).checkClasses(5); err != nil {
		t.Errorf("classes within range: %v", err)
	}
}

func TestTargetShape(t *testing.T) {
	tests := []struct {
		dims  []int64
		batch int
		n     int
		want  []int64
		err   string
	}{
		{[]int64{-1, 4}, 3, 4, []int64{3, 4}, ""},
		{[]int64{-1, -1, 4}, 2, 8, []int64{2, 2, 4}, ""},        // a sequence of 2
		{[]int64{-1, -1, -1, 4}, 2, 8, []int64{2, 1, 2, 4}, ""}, // all but the last dynamic dim are 1
		{[]int64{-1, 2, 4}, 2, 8, []int64{2, 2, 4}, ""},
		{[]int64{-1, 2, 4}, 2, 6, nil, "6 values per example do not fit"},
		{[]int64{-1, -1, 4}, 2, 6, nil, "6 values per example do not fit"},
		{nil, 2, 6, nil, "no batch dimension"},
	}
	for i, tt := range tests {
		got, err := targetShape(tt.dims, tt.batch, tt.n)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("test %d: got error %v, want %q", i, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d: got %v, %v want %v", i, got, err, tt.want)
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
		{"negative class", `{"input_ids":[1],"label":-5}`, "bad.jsonl:1: label is -5"},
		{"float class", `{"input_ids":[1],"label":0.5}`, `bad.jsonl:1: field "label"`},
		{"empty target", `{"input_ids":[1],"target":[]}`, "bad.jsonl:1: empty target"},
		{"huge target", `{"input_ids":[1],"target":[1e39]}`, "bad.jsonl:1: target[0] is 1e+39, beyond float32"},
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
