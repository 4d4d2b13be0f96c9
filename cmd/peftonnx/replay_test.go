package main

import (
	"bytes"
	gocontext "context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/npy"
	"github.com/peftonnx/peftonnx/rewrite"
)

// replayEnv, set to 1, makes the test binary run its arguments as the
// peftonnx command line (TestMain), so that the replay runs the CLI in a
// process of its own, under its own limits, without building a binary;
// the MPI build's tests run ranks of peftonnx train so too.
const replayEnv = "PEFTONNX_REPLAY_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(replayEnv) == "1" {
		// As main runs it: the MPI build's data-parallel tests start
		// ranks this way under mpirun, which wants MPI ended.
		os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// The limits each replayed command runs under: those the replay
// of hostile files uses (issue 16, "What must hold").
const (
	replayAddressSpaceKiB = 6291456 // ulimit -v: 6 GiB
	replayTimeout         = 20 * time.Second
)

// An outcome is how a replayed command ended.
type outcome string

const (
	oneLineError outcome = "one-line error" // non-zero exit, stderr one "peftonnx: " line
	success      outcome = "success"        // exit 0
	crash        outcome = "crash"          // panic, fatal error, signal, timeout, or an error of another form
)

// replayCase is one hostile command line and what it must end in.
type replayCase struct {
	class, name string
	args        []string
	env         []string
	want        outcome
}

// runReplay runs c's command line in a process of its own under the
// replay's limits and says how it ended.
func runReplay(c replayCase) (outcome, string) {
	ctx, cancel := gocontext.WithTimeout(gocontext.Background(), replayTimeout)
	defer cancel()
	script := fmt.Sprintf(`ulimit -v %d && exec "$0" "$@"`, replayAddressSpaceKiB)
	cmd := exec.CommandContext(ctx, "bash", append([]string{"-c", script, os.Args[0]}, c.args...)...)
	cmd.Env = append(append(os.Environ(), replayEnv+"=1"), c.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	msg := stderr.String()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return crash, fmt.Sprintf("ran past %s", replayTimeout)
	case err == nil:
		return success, strings.TrimSpace(stdout.String())
	case !errors.As(err, &exit):
		return crash, err.Error()
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return crash, fmt.Sprintf("signal %v: %s", ws.Signal(), msg)
	}
	oneLine := strings.HasPrefix(msg, "peftonnx: ") && strings.Count(msg, "\n") == 1 && strings.HasSuffix(msg, "\n")
	if !oneLine || strings.Contains(msg, "internal error, a bug in peftonnx") {
		return crash, msg
	}
	return oneLineError, strings.TrimSpace(msg)
}

// TestReplayHostile runs the CLI on hostile files of every class the
// issue names (model files, LoRA records, adapters, limits, training
// data, tokenizers, outputs), each in a process of its own under a 6 GiB
// address-space cap and a 20 s limit: each must end in a one-line error
// (or, for the few that are fine, succeed), never in a panic, a fatal
// error, a signal or a timeout. It logs how many cases of each class ran
// and how each ended (go test -v -run TestReplayHostile).
func TestReplayHostile(t *testing.T) {
	needORT(t)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not here")
	}
	cases := replayCases(t, t.TempDir())
	results := make([]outcome, len(cases))
	details := make([]string, len(cases))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i], details[i] = runReplay(cases[i])
			}
		}()
	}
	for i := range cases {
		work <- i
	}
	close(work)
	wg.Wait()

	counts := map[string]map[outcome]int{}
	for i, c := range cases {
		if counts[c.class] == nil {
			counts[c.class] = map[outcome]int{}
		}
		counts[c.class][results[i]]++
		if results[i] != c.want {
			t.Errorf("%s / %s: %s (want %s): %s", c.class, c.name, results[i], c.want, details[i])
		}
	}
	classes := make([]string, 0, len(counts))
	for c := range counts {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	total := 0
	for _, c := range classes {
		n := counts[c][oneLineError] + counts[c][success] + counts[c][crash]
		total += n
		t.Logf("%-10s %2d cases: %2d one-line error, %2d success, %2d crash", c, n, counts[c][oneLineError], counts[c][success], counts[c][crash])
	}
	t.Logf("%d cases in all", total)
}

// replayCases writes the hostile files into dir and returns the command
// lines that read them.
func replayCases(t *testing.T, dir string) []replayCase {
	t.Helper()
	path := func(name string) string { return filepath.Join(dir, name) }
	out := func(name string) string { return filepath.Join(dir, "out", name) }
	base := builderBase(t, dir)
	lora := trainTinyLlama(t, dir)
	data := trainCountingData(t, dir, "good.jsonl", 8, 6, 32)
	var cs []replayCase
	add := func(class, name string, want outcome, args ...string) {
		cs = append(cs, replayCase{class: class, name: name, args: args, want: want})
	}

	// Model files.
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	replayWrite(t, path("truncated.onnx"), b[:len(b)/2])
	replayWrite(t, path("garbage.onnx"), bytes.Repeat([]byte{0xff, 0x3a}, 4096))
	linear := func(name string, edit func(g *onnxpb.GraphProto)) string {
		w := graph.NewFloat32Tensor("W", dtype.Float32, []int64{3, 4}, make([]float32, 12))
		g := &onnxpb.GraphProto{
			Name:        "g",
			Input:       []*onnxpb.ValueInfoProto{graph.TensorInfo("x", dtype.Float32, []int64{1, 3})},
			Output:      []*onnxpb.ValueInfoProto{graph.TensorInfo("y", dtype.Float32, []int64{1, 4})},
			Node:        []*onnxpb.NodeProto{{Name: "proj/MatMul", OpType: "MatMul", Input: []string{"x", "W"}, Output: []string{"y"}}},
			Initializer: []*onnxpb.TensorProto{w},
		}
		edit(g)
		pb, err := proto.Marshal(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}, Graph: g})
		if err != nil {
			t.Fatal(err)
		}
		replayWrite(t, path(name), pb)
		return path(name)
	}
	external := func(location, offset, length string) func(g *onnxpb.GraphProto) {
		return func(g *onnxpb.GraphProto) {
			w := g.Initializer[0]
			w.RawData = nil
			w.DataLocation = onnxpb.TensorProto_EXTERNAL
			w.ExternalData = []*onnxpb.StringStringEntryProto{{Key: "location", Value: location}, {Key: "offset", Value: offset}, {Key: "length", Value: length}}
		}
	}
	replayWrite(t, path("w.data"), make([]byte, 48))
	modelFiles := map[string]string{
		"truncated protobuf":                 path("truncated.onnx"),
		"garbage":                            path("garbage.onnx"),
		"offset near 2^63 (C1)":              linear("c1.onnx", external("w.data", "9223372036854775800", "48")),
		"length near 2^63 (C1)":              linear("c1b.onnx", external("w.data", "0", "9223372036854775807")),
		"dims [1e11, 8] over 48 bytes (M1)":  linear("m1.onnx", func(g *onnxpb.GraphProto) { g.Initializer[0].Dims = []int64{1e11, 8} }),
		"dims [1e6, 1e6] over 48 bytes (M1)": linear("m1b.onnx", func(g *onnxpb.GraphProto) { g.Initializer[0].Dims = []int64{1e6, 1e6} }),
		"data shorter than dims (E9)":        linear("e9a.onnx", func(g *onnxpb.GraphProto) { g.Initializer[0].RawData = g.Initializer[0].RawData[:20] }),
		"two initializers of one name (E9)": linear("e9b.onnx", func(g *onnxpb.GraphProto) {
			g.Initializer = append(g.Initializer, proto.Clone(g.Initializer[0]).(*onnxpb.TensorProto))
		}),
		"type other than declared (E9)": linear("e9c.onnx", func(g *onnxpb.GraphProto) { g.Initializer[0].DataType = int32(dtype.Float64) }),
		"location out of the folder":    linear("up.onnx", external("../w.data", "0", "48")),
		"location is a folder (E10)":    linear("dir.onnx", external("out", "0", "48")),
		"link to /etc/passwd (X1)":      linear("x1.onnx", external("link.data", "0", "48")),
	}
	if err := os.Mkdir(path("out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", path("link.data")); err != nil {
		t.Fatal(err)
	}
	for name, m := range modelFiles {
		add("model", name+": inspect", oneLineError, "inspect", m)
		add("model", name+": inject", oneLineError, "inject", m, "-o", out("x.onnx"), "--target", ".*")
	}
	shared := linear("m6.onnx", func(g *onnxpb.GraphProto) {
		external("w.data", "0", "48")(g)
		for i := range 200 {
			c := proto.Clone(g.Initializer[0]).(*onnxpb.TensorProto)
			c.Name = fmt.Sprintf("unused%d", i)
			g.Initializer = append(g.Initializer, c)
		}
	})
	add("model", "one region under 200 initializers (M6): inject", success, "inject", shared, "-o", out("m6.onnx"), "--target", ".*")

	// LoRA records.
	record := func(name string, edit func(rec map[string]any, sites []map[string]any, m *graph.Model)) string {
		m, err := graph.Load(lora)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		for _, p := range m.Proto.MetadataProps {
			if p.Key != rewrite.MetadataKey {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(p.Value), &rec); err != nil {
				t.Fatal(err)
			}
			var sites []map[string]any
			for _, s := range rec["sites"].([]any) {
				sites = append(sites, s.(map[string]any))
			}
			edit(rec, sites, m)
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			p.Value = string(b)
		}
		if err := m.Save(path(name), graph.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		return path(name)
	}
	records := map[string]string{
		"sites[0].in changed (C2)":      record("c2a.onnx", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["in"] = 72.0 }),
		"sites[0].a is the weight (C2)": record("c2b.onnx", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["a"] = s[0]["weight"] }),
		"lists a base node (E8)": record("e8a.onnx", func(_ map[string]any, s []map[string]any, m *graph.Model) {
			s[0]["nodes"] = append(s[0]["nodes"].([]any), m.Producer(s[1]["base_output"].(string)).Name)
		}),
		"lists a base weight (E8)": record("e8b.onnx", func(_ map[string]any, s []map[string]any, _ *graph.Model) {
			s[0]["initializers"] = append(s[0]["initializers"].([]any), s[1]["weight"])
		}),
		"version 99 (E8)":   record("e8c.onnx", func(rec map[string]any, _ []map[string]any, _ *graph.Model) { rec["version"] = 99.0 }),
		"not JSON":          record("json.onnx", func(rec map[string]any, _ []map[string]any, _ *graph.Model) { rec["sites"] = "x" }),
		"huge rank":         record("rank.onnx", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["r"] = 1e12 }),
		"fused, head dim 0": record("fused.onnx", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["enable"] = []any{true, false} }),
	}
	for name, m := range records {
		add("record", name+": merge", oneLineError, "merge", m, "-o", out("merged.onnx"))
		// Export removes nothing: a record that lists base nodes or
		// weights as a branch's still describes its factors rightly.
		want := oneLineError
		if strings.HasPrefix(name, "lists") {
			want = success
		}
		add("record", name+": export-adapter", want, "export-adapter", m, "--out", out(name))
	}

	// Adapters: non-finite values and products past float32 (E7).
	factors := func(name string, a, b float32) string {
		m, err := graph.Load(lora)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		sites, err := rewrite.Sites(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			name string
			v    float32
		}{{sites[0].A, a}, {sites[0].B, b}} {
			init := m.Initializer(f.name)
			vals := make([]float32, graph.NumElements(init.Dims))
			for i := range vals {
				vals[i] = f.v
			}
			if err := graph.SetFloat32s(init, vals); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Save(path(name), graph.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		return path(name)
	}
	overflow := factors("overflow.onnx", 1e20, 1e20)
	for name, m := range map[string]string{
		"NaN in A":             factors("nan.onnx", float32(math.NaN()), 0.5),
		"Inf in B":             factors("inf.onnx", 0.5, float32(math.Inf(1))),
		"product past float32": overflow,
	} {
		add("adapter", name+": merge", oneLineError, "merge", m, "-o", out("merged.onnx"))
		add("adapter", name+": export-adapter", oneLineError, "export-adapter", m, "--out", out("ad"))
	}
	add("adapter", "missing adapter folder", oneLineError, "apply", base, "--adapter", path("no-such-adapter"), "-o", out("a.onnx"))
	replayWrite(t, path("bad-adapter/adapter_config.json"), []byte(`{"peft_type": "LORA", "r": -3}`))
	add("adapter", "negative r in adapter_config.json", oneLineError, "apply", base, "--adapter", path("bad-adapter"), "-o", out("a.onnx"))

	// Limits (M5, C3).
	add("limits", "inject --r 1e9", oneLineError, "inject", base, "-o", out("x.onnx"), "--target", ".*", "--r", "1000000000")
	add("limits", "inject --r 60000 on every layer of the tiny model (146 MB: fits)", success, "inject", base, "-o", out("x.onnx"), "--target", ".*", "--r", "60000")
	add("limits", "prefix --tokens 1e7", oneLineError, "prefix", base, "-o", out("x.onnx"), "--tokens", "10000000")
	add("limits", "prefix --projection-hidden 1e9", oneLineError, "prefix", base, "-o", out("x.onnx"), "--tokens", "4", "--projection", "--projection-hidden", "1000000000")
	add("limits", "train --threads 100000", oneLineError, "train", lora, "--data", data, "--out", out("t"), "--steps", "1", "--threads", "100000")
	cs = append(cs, replayCase{class: "limits", name: "a limit set too low", args: []string{"inject", base, "-o", out("x.onnx"), "--target", ".*", "--r", "8"}, env: []string{"PEFTONNX_MAX_RANK=4"}, want: oneLineError})

	// Training data (M3, E3, E4, E10).
	big := bytes.Repeat([]byte("1,"), 10<<20)
	replayWrite(t, path("long.jsonl"), append(append([]byte(`{"input_ids":[`), big...), []byte("1]}\n")...))
	jsonl := map[string]string{
		"a 20 MB line (M3)":       path("long.jsonl"),
		"a JSON array line (E10)": trainWriteLines(t, dir, "array.jsonl", `[1,2,3]`),
		"every label -100 (E3)":   trainWriteLines(t, dir, "masked.jsonl", `{"input_ids":[1,2,3],"labels":[-100,-100,-100]}`),
		"one-token examples (E3)": trainWriteLines(t, dir, "one.jsonl", `{"input_ids":[1]}`, `{"input_ids":[2]}`),
		"negative ids":            trainWriteLines(t, dir, "neg.jsonl", `{"input_ids":[1,-2]}`),
		"ids past the vocabulary": trainWriteLines(t, dir, "vocab.jsonl", `{"input_ids":[1,99999]}`),
		"not JSON":                trainWriteLines(t, dir, "junk.jsonl", "\x00\x01garbage"),
	}
	for name, f := range jsonl {
		add("data", name, oneLineError, "train", lora, "--data", f, "--out", out("t"), "--steps", "1", "--threads", "1")
	}
	add("data", "--seq-len 1 (E3)", oneLineError, "train", lora, "--data", data, "--out", out("t"), "--steps", "1", "--threads", "1", "--seq-len", "1")
	c := models.LlamaTiny()
	c.Producer, c.MaxPositions = models.ModelBuilder, 4
	rotary, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	add("data", "longer than the rotary cache (E4)", oneLineError, "train", trainAdaptedModel(t, dir, "rotary.onnx", rotary, ".*q_proj"), "--data", data, "--out", out("t"), "--steps", "1", "--threads", "1")

	// Tokenizers (E1, E2).
	tokenizers := map[string]string{
		"empty object":         `{}`,
		"null model":           `{"model": null}`,
		"unknown model type":   `{"model": {"type": "` + strings.Repeat("X", 1<<20) + `"}}`,
		"bad normalizer regex": `{"normalizer": {"type": "Replace", "pattern": {"Regex": "(a"}, "content": ""}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"vocab of wrong type":  `{"model": {"type": "BPE", "vocab": [1, 2], "merges": []}}`,
		"truncated":            `{"model": {"type": "BPE", "vocab": {"a"`,
	}
	i := 0
	for name, text := range tokenizers {
		f := path(fmt.Sprintf("tok%d.json", i))
		i++
		replayWrite(t, f, []byte(text))
		add("tokenizer", name, oneLineError, "generate", base, "--tokenizer", f, "--prompt", "hi")
		add("tokenizer", name+" (train)", oneLineError, "train", lora, "--data", trainWriteLines(t, dir, "text.jsonl", `{"text":"hi there"}`), "--tokenizer", f, "--out", out("t"), "--steps", "1")
	}

	// A run that fails inside ONNX Runtime (E10): its own log lines would
	// come before ours.
	dynamic := linear("dynamic.onnx", func(g *onnxpb.GraphProto) {
		g.Input[0] = graph.TensorInfo("x", dtype.Float32, []int64{-1, -1})
		g.Output[0] = graph.TensorInfo("y", dtype.Float32, []int64{-1, -1})
	})
	x5, err := npy.New([]int64{1, 5}, make([]float32, 5))
	if err != nil {
		t.Fatal(err)
	}
	if err := npy.WriteFile(path("x5.npy"), x5); err != nil {
		t.Fatal(err)
	}
	add("outputs", "MatMul fails inside ONNX Runtime (E10)", oneLineError, "run", dynamic, "--input", "x="+path("x5.npy"), "--output-dir", out("run"))

	// Outputs (D4, E10).
	replayWrite(t, path("a-file"), []byte("x"))
	add("outputs", "-o ends in a slash (E10)", oneLineError, "inject", base, "-o", path("new")+"/", "--target", ".*q_proj")
	add("outputs", "-o over the input", oneLineError, "inject", base, "-o", base, "--target", ".*q_proj")
	add("outputs", "--out is a file", oneLineError, "train", lora, "--data", data, "--out", path("a-file"), "--steps", "1")
	add("outputs", "--log-json in a missing folder (D4)", oneLineError, "train", lora, "--data", data, "--out", out("t2"), "--log-json", path("missing/log.jsonl"), "--steps", "1")
	add("outputs", "--out that takes no files (D4)", oneLineError, "train", lora, "--data", data, "--out", "/proc/self", "--steps", "1")
	add("outputs", "a good run", success, "train", lora, "--data", data, "--out", out("good"), "--steps", "1", "--threads", "1")
	return cs
}

// replayWrite writes b to path, making its folder.
func replayWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
