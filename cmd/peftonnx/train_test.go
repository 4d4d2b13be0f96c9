package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train"
)

// trainAdaptedModel builds m, gives the layers that targets select LoRA (rank
// 4), saves it to dir/name and returns the path.
func trainAdaptedModel(t *testing.T, dir, name string, m *graph.Model, targets ...string) string {
	t.Helper()
	lc := adapter.DefaultLoRAConfig(targets...)
	lc.R, lc.Alpha = 4, 8
	if _, _, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := m.Save(path, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// trainTinyLlama saves the tiny LLaMA builder model with LoRA on its
// projections and its head. (With the head frozen, the tiny model's
// near-zero logits take hundreds of steps to move.)
func trainTinyLlama(t *testing.T, dir string) string {
	t.Helper()
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	return trainAdaptedModel(t, dir, "llama-lora.onnx", m, ".*_proj", "lm_head")
}

// trainWriteLines writes lines as a file in dir and returns its path.
func trainWriteLines(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// trainCountingData writes n sequences that count upward modulo vocab from
// varied starts: a task a tiny model learns in a few steps.
func trainCountingData(t *testing.T, dir, name string, n, length, vocab int) string {
	t.Helper()
	var lines []string
	for i := range n {
		ids := make([]string, length)
		for j := range ids {
			ids[j] = fmt.Sprint((3*i + j) % vocab)
		}
		lines = append(lines, `{"input_ids":[`+strings.Join(ids, ",")+`]}`)
	}
	return trainWriteLines(t, dir, name, lines...)
}

// trainLogLines reads a --log-json file.
func trainLogLines(t *testing.T, path string) []map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]float64
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]float64
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestTrainCommand(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := trainTinyLlama(t, dir)
	data := trainCountingData(t, dir, "train.jsonl", 16, 8, 32)
	eval := trainCountingData(t, dir, "eval.jsonl", 4, 8, 32)
	out, logPath, merged := filepath.Join(dir, "out"), filepath.Join(dir, "log.jsonl"), filepath.Join(dir, "merged.onnx")
	stdout := runOK(t, "train", model, "--data", data, "--eval", eval, "--out", out, "--steps", "30", "--batch", "4",
		"--lr", "2e-2", "--schedule", "constant", "--warmup", "2", "--log-json", logPath, "--merged", merged, "--threads", "1", "--checkpoint-every", "10")
	for _, want := range []string{"trainable params: ", "task: causal LM loss on logits, 30 steps", "trained 30 steps in ", "tokens/s", "eval loss ", "perplexity", "merged model: " + merged} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q does not contain %q", stdout, want)
		}
	}
	if got, want := dirNames(t, out), []string{"adapter_config.json", "adapter_model.safetensors", "checkpoint-30", "loss.png"}; !slices.Equal(got, want) {
		t.Errorf("out holds %v, want %v", got, want)
	}

	// The log: one line per step with step, loss, lr and grad_norm, then
	// the evaluation; the loss falls.
	recs := trainLogLines(t, logPath)
	if len(recs) != 31 {
		t.Fatalf("log has %d lines, want 30 steps and 1 evaluation", len(recs))
	}
	for i, r := range recs[:30] {
		for _, k := range []string{"step", "loss", "lr", "grad_norm"} {
			if _, ok := r[k]; !ok {
				t.Errorf("log line %d has no %q: %v", i+1, k, r)
			}
		}
		if r["step"] != float64(i+1) {
			t.Errorf("log line %d is step %v", i+1, r["step"])
		}
	}
	if recs[0]["lr"] != 0 || recs[2]["lr"] != 2e-2 {
		t.Errorf("warmup: lr at steps 1 and 3 are %v and %v, want 0 and 0.02", recs[0]["lr"], recs[2]["lr"])
	}
	if first, last := recs[0]["loss"], recs[29]["loss"]; !(last < 0.6*first) {
		t.Errorf("loss did not fall: %v -> %v", first, last)
	}
	if _, ok := recs[30]["eval_loss"]; !ok {
		t.Errorf("last log line is not the evaluation: %v", recs[30])
	}

	// The adapter loads, is the trained one, and applies to the base.
	ad, err := adapter.LoadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ad.Weights) != 15 { // 7 projections in each of 2 layers, and the head
		t.Errorf("adapter has %d modules, want 15", len(ad.Weights))
	}
	moved := false
	for _, w := range ad.Weights {
		for _, v := range w.B.Data {
			moved = moved || v != 0
		}
	}
	if !moved {
		t.Errorf("every B of the saved adapter is zero: it is not the trained one")
	}
	f, err := os.Open(filepath.Join(out, "loss.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("loss.png: %v", err)
	}

	// Frozen weights are untouched: the merged model's differ from the
	// base's only in the adapted layers' weights.
	base, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	mm := loadModel(t, merged)
	if len(mm.Graph().Node) != len(base.Graph().Node) {
		t.Errorf("merged model has %d nodes, base %d", len(mm.Graph().Node), len(base.Graph().Node))
	}
	for _, init := range base.Graph().Initializer {
		want, _ := base.TensorBytes(init)
		got, err := mm.TensorBytes(mm.Initializer(init.Name))
		if err != nil {
			t.Fatal(err)
		}
		adaptedWeight := strings.Contains(init.Name, "_proj.weight") || init.Name == "lm_head.weight"
		if bytes.Equal(got, want) == adaptedWeight {
			t.Errorf("merged initializer %s: changed %v, want changed only for adapted weights", init.Name, !bytes.Equal(got, want))
		}
	}
}

// TestTrainResume checks the determinism the command promises: 10 steps
// in one run, and 5 steps, a stop and 5 more with --resume, give the same
// adapter bit for bit and the same log. So do --steps 5 and then --steps
// 10 --resume with a constant schedule.
func TestTrainResume(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := trainTinyLlama(t, dir)
	data := trainCountingData(t, dir, "train.jsonl", 12, 8, 32)
	common := []string{model, "--data", data, "--batch", "4", "--lr", "1e-2", "--weight-decay", "0.01", "--threads", "1"}
	run := func(out string, extra ...string) string {
		return runOK(t, append(append([]string{"train"}, common...), append([]string{"--out", filepath.Join(dir, out)}, extra...)...)...)
	}
	weights := func(out string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, out, adapter.HFWeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	run("straight", "--steps", "10", "--log-json", filepath.Join(dir, "straight.log"))
	stdout := run("stopped", "--steps", "10", "--stop-after", "5", "--log-json", filepath.Join(dir, "stopped.log"))
	if !strings.Contains(stdout, "stopped after 5 steps at step 5 of 10") {
		t.Errorf("stopped run printed %q", stdout)
	}
	if got := dirNames(t, filepath.Join(dir, "stopped")); !slices.Equal(got, []string{"checkpoint-5"}) {
		t.Errorf("a stopped run left %v, want only checkpoint-5", got)
	}
	stdout = run("stopped", "--steps", "10", "--resume", "--log-json", filepath.Join(dir, "stopped.log"))
	if !strings.Contains(stdout, "resumed at step 5 of 10") {
		t.Errorf("resumed run printed %q", stdout)
	}
	if !bytes.Equal(weights("straight"), weights("stopped")) {
		t.Errorf("10 steps and 5+5 steps with --resume give different adapters")
	}
	a, _ := os.ReadFile(filepath.Join(dir, "straight.log"))
	b, _ := os.ReadFile(filepath.Join(dir, "stopped.log"))
	if !bytes.Equal(a, b) {
		t.Errorf("the resumed run's log differs from the straight run's:\n%s", lineDiff(string(a), string(b)))
	}

	run("constant10", "--steps", "10", "--schedule", "constant")
	run("constant5", "--steps", "5", "--schedule", "constant")
	run("constant5", "--steps", "10", "--schedule", "constant", "--resume")
	if !bytes.Equal(weights("constant10"), weights("constant5")) {
		t.Errorf("--steps 10, and --steps 5 then --steps 10 --resume, give different adapters with a constant schedule")
	}
	if bytes.Equal(weights("straight"), weights("constant10")) {
		t.Errorf("the schedules made no difference: the comparison proves nothing")
	}
}

// TestTrainTasks trains a classifier and a regression through the command.
func TestTrainTasks(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	bert, err := models.BERT(models.BERTTiny())
	if err != nil {
		t.Fatal(err)
	}
	cls := trainAdaptedModel(t, dir, "bert-lora.onnx", bert, ".*query", ".*value", "classifier")
	var lines []string
	for i := range 16 {
		first := 1 + i%2 // the label is the first token's parity
		lines = append(lines, fmt.Sprintf(`{"input_ids":[%d,%d,%d,%d],"label":%d}`, first, 5+i%7, 9+i%5, 3, first-1))
	}
	data := trainWriteLines(t, dir, "cls.jsonl", lines...)
	logPath := filepath.Join(dir, "cls.log")
	stdout := runOK(t, "train", cls, "--data", data, "--eval", data, "--out", filepath.Join(dir, "cls"), "--steps", "30",
		"--batch", "8", "--lr", "5e-2", "--threads", "1", "--log-json", logPath)
	if !strings.Contains(stdout, "task: classification loss on logits") || !strings.Contains(stdout, "accuracy") {
		t.Errorf("classifier run printed %q", stdout)
	}
	recs := trainLogLines(t, logPath)
	if first, last := recs[0]["loss"], recs[29]["loss"]; !(last < 0.5*first) {
		t.Errorf("classification loss did not fall: %v -> %v", first, last)
	}

	// A label of the wrong class, and a missing label, name their line.
	bad := trainWriteLines(t, dir, "cls-bad.jsonl", `{"input_ids":[1,2],"label":1}`, `{"input_ids":[1,2],"label":3}`)
	o, e, code := cli(t, "train", cls, "--data", bad, "--out", filepath.Join(dir, "x"))
	wantError(t, "class out of range", o, e, code, 1, "cls-bad.jsonl:2: label 3 is outside the model's 3 classes")
	bad = trainWriteLines(t, dir, "cls-none.jsonl", `{"input_ids":[1,2]}`)
	o, e, code = cli(t, "train", cls, "--data", bad, "--out", filepath.Join(dir, "x"))
	wantError(t, "no label", o, e, code, 1, `cls-none.jsonl:1: no "label"`)

	// Regression: the LLaMA's logits scored by MSE, asked for.
	reg := trainTinyLlama(t, dir)
	lines = lines[:0]
	for i := range 8 {
		target := make([]string, 3*32)
		for j := range target {
			target[j] = fmt.Sprint(float64((i+j)%4) - 1.5)
		}
		lines = append(lines, fmt.Sprintf(`{"input_ids":[%d,%d,%d],"target":[%s]}`, i, i+1, i+2, strings.Join(target, ",")))
	}
	data = trainWriteLines(t, dir, "reg.jsonl", lines...)
	logPath = filepath.Join(dir, "reg.log")
	stdout = runOK(t, "train", reg, "--data", data, "--out", filepath.Join(dir, "reg"), "--steps", "20", "--loss", "mse",
		"--batch", "4", "--lr", "1e-2", "--threads", "1", "--log-json", logPath)
	if !strings.Contains(stdout, "task: MSE on logits") {
		t.Errorf("regression run printed %q", stdout)
	}
	recs = trainLogLines(t, logPath)
	if first, last := recs[0]["loss"], recs[19]["loss"]; !(last < 0.8*first) {
		t.Errorf("MSE did not fall: %v -> %v", first, last)
	}
	bad = trainWriteLines(t, dir, "reg-bad.jsonl", lines[0], `{"input_ids":[1,2,3],"target":[1,2,3]}`)
	o, e, code = cli(t, "train", reg, "--data", bad, "--out", filepath.Join(dir, "x"), "--loss", "mse")
	wantError(t, "target of the wrong length", o, e, code, 1, "reg-bad.jsonl:2: target has 3 values")
}

// TestTrainErrors checks that bad input fails with one clear line and
// leaves no output behind.
func TestTrainErrors(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := trainTinyLlama(t, dir)
	base, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	basePath := filepath.Join(dir, "base.onnx")
	if err := base.Save(basePath, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	asInputs, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rewrite.InjectLoRA(asInputs, adapter.DefaultLoRAConfig(".*q_proj"), rewrite.AsInputs()); err != nil {
		t.Fatal(err)
	}
	asInputsPath := filepath.Join(dir, "as-inputs.onnx")
	if err := asInputs.Save(asInputsPath, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	good := trainCountingData(t, dir, "good.jsonl", 8, 6, 32)
	malformed := trainWriteLines(t, dir, "malformed.jsonl", `{"input_ids":[1,2,3]}`, `{"input_ids":[4,5,6]}`, `{"input_ids":[7,8,`)
	shortLabels := trainWriteLines(t, dir, "labels.jsonl", `{"input_ids":[1,2,3]}`, `{"input_ids":[1,2,3],"labels":[1,2]}`)
	bigIDs := trainWriteLines(t, dir, "ids.jsonl", `{"input_ids":[1,2,3]}`, `{"input_ids":[1,2,3]}`, `{"input_ids":[1,40,3]}`)
	used := filepath.Join(dir, "used")
	runOK(t, "train", model, "--data", good, "--out", used, "--steps", "1", "--threads", "1")

	out, logPath, merged := filepath.Join(dir, "out"), filepath.Join(dir, "log.jsonl"), filepath.Join(dir, "merged.onnx")
	tests := []struct {
		reason string
		args   []string
		code   int
		want   []string
	}{
		{"no adapter", []string{basePath, "--data", good}, 1, []string{"train: " + basePath + " has no adapter (run peftonnx inject first)"}},
		{"factors as inputs", []string{asInputsPath, "--data", good}, 1, []string{"graph inputs", "inject without --as-inputs"}},
		{"malformed JSONL", []string{model, "--data", malformed}, 1, []string{"malformed.jsonl:3: invalid JSON"}},
		{"labels of the wrong length", []string{model, "--data", shortLabels}, 1, []string{"labels.jsonl:2: labels has 2 values, input_ids 3"}},
		{"token outside the vocabulary", []string{model, "--data", bigIDs}, 1, []string{"ids.jsonl:3: input_ids[1] is 40, outside the model's vocabulary of 32"}},
		{"NaN loss", []string{model, "--data", good, "--lr", "1e30", "--steps", "5"}, 1, []string{"train: step 2: loss is NaN"}},
		{"missing data", []string{model, "--data", filepath.Join(dir, "nope.jsonl")}, 1, []string{"nope.jsonl: no such file"}},
		{"earlier run", []string{model, "--data", good, "--out", used}, 1, []string{"holds checkpoints of an earlier run (checkpoint-1)", "--resume"}},
		{"nothing to resume", []string{model, "--data", good, "--resume"}, 1, []string{"holds no checkpoint to resume from"}},
		{"changed run", []string{model, "--data", good, "--out", used, "--resume", "--batch", "2", "--steps", "3"}, 1, []string{"was saved with batch size 8, this run has 2"}},
		{"merged over the model", []string{model, "--data", good, "--merged", model}, 1, []string{"would overwrite the input"}},
		{"no data", []string{model}, 2, []string{"--data FILE.jsonl is required"}},
		{"no out", []string{model, "--data", good, "--out", ""}, 2, []string{"--out DIR is required"}},
		{"bad schedule", []string{model, "--data", good, "--schedule", "step"}, 2, []string{"--schedule must be constant, linear or cosine"}},
		{"bad loss", []string{model, "--data", good, "--loss", "hinge"}, 2, []string{"--loss must be"}},
		{"bad loss scale", []string{model, "--data", good, "--loss-scale", "3"}, 2, []string{"power of two"}},
	}
	if tok := filepath.Join(sharedModels, "tiny-llama-genai-fp16", "tokenizer.json"); trainFileExists(tok) {
		tests = append(tests, struct {
			reason string
			args   []string
			code   int
			want   []string
		}{"tokenizer larger than the model", []string{model, "--data", good, "--tokenizer", tok}, 1, []string{"has 32000 tokens, more than the model's vocabulary of 32"}})
	}
	for _, tt := range tests {
		args := append([]string{"train"}, tt.args...)
		if !slices.Contains(tt.args, "--out") {
			args = append(args, "--out", out)
		}
		if !slices.Contains(tt.args, "--merged") {
			args = append(args, "--merged", merged)
		}
		args = append(args, "--log-json", logPath, "--threads", "1")
		stdout, stderr, code := cli(t, args...)
		if tt.reason == "NaN loss" {
			// The run started: it printed its plan before it failed.
			stdout = ""
		}
		wantError(t, tt.reason, stdout, stderr, code, tt.code, tt.want...)
		for _, p := range []string{out, logPath, merged, merged + ".data"} {
			if trainFileExists(p) {
				t.Errorf("%s: %s was left behind", tt.reason, p)
				os.RemoveAll(p)
			}
		}
		if got := dirNames(t, dir); slices.ContainsFunc(got, func(n string) bool { return strings.Contains(n, ".tmp") }) {
			t.Errorf("%s: temporary files left in %s: %v", tt.reason, dir, got)
		}
		if got := dirNames(t, used); !slices.Equal(got, []string{"adapter_config.json", "adapter_model.safetensors", "checkpoint-1", "loss.png"}) {
			t.Errorf("%s: the earlier run's output changed: %v", tt.reason, got)
		}
	}
}

func trainFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestTrainRealModels trains the fp16 LLaMA exported by onnxruntime-genai
// (fused ops, external data) from text through its own tokenizer, and the
// head-less GPT-2 exported by PyTorch 1.6 by MSE, through the command.
func TestTrainRealModels(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	tok := filepath.Join(filepath.Dir(llama), "tokenizer.json")
	adapted := filepath.Join(dir, "llama-lora.onnx")
	runOK(t, "inject", llama, "-o", adapted, "--target", ".*_proj", "--target", "lm_head", "--r", "8", "--alpha", "16")
	data := trainWriteLines(t, dir, "text.jsonl",
		`{"text":"The quick brown fox jumps over the lazy dog."}`,
		`{"src":"Question: what is power?","tgt":" Knowledge."}`,
		`{"text":"All that glitters is not gold."}`,
		`{"text":"Time flies like an arrow."}`)
	logPath := filepath.Join(dir, "llama.log")
	merged := filepath.Join(dir, "llama-merged.onnx")
	stdout := runOK(t, "train", adapted, "--data", data, "--tokenizer", tok, "--out", filepath.Join(dir, "llama"), "--steps", "30",
		"--batch", "4", "--lr", "1e-2", "--threads", "1", "--log-json", logPath, "--merged", merged)
	if !strings.Contains(stdout, "16-bit graph trained in float32") {
		t.Errorf("stdout %q does not say the graph was upcast", stdout)
	}
	recs := trainLogLines(t, logPath)
	first, last := recs[0]["loss"], recs[len(recs)-1]["loss"]
	t.Logf("tiny-llama-genai-fp16: loss %.4f -> %.4f in 30 steps", first, last)
	if !(last < 0.6*first) {
		t.Errorf("loss did not fall clearly: %v -> %v", first, last)
	}
	// The merged model keeps external data, like the model it came from,
	// and only the adapted weights changed.
	if !trainFileExists(merged + ".data") {
		t.Errorf("the merged model has no external data file")
	}
	if name := sameInitializers(t, loadModel(t, merged), loadModel(t, llama)); name == "" || !strings.Contains(name, "proj") && name != "lm_head.MatMul.weight" {
		t.Errorf("merged vs base: first differing initializer %q, want an adapted weight", name)
	}

	gpt2 := sharedModel(t, "gpt2-past-torch16")
	adapted = filepath.Join(dir, "gpt2-lora.onnx")
	runOK(t, "inject", gpt2, "-o", adapted, "--target", ".*c_attn", "--target", ".*c_proj", "--target", ".*c_fc", "--r", "4",
		"--bias", "lora", "--trainable", `ln_f\..*`)
	var lines []string
	for i := range 16 {
		target := "[1,-1,0.5,-0.5]"
		if i%2 == 1 {
			target = "[-0.5,0.5,-1,1]"
		}
		lines = append(lines, fmt.Sprintf(`{"input_ids":[%d],"target":%s}`, i, target))
	}
	data = trainWriteLines(t, dir, "targets.jsonl", lines...)
	logPath = filepath.Join(dir, "gpt2.log")
	stdout = runOK(t, "train", adapted, "--data", data, "--out", filepath.Join(dir, "gpt2"), "--steps", "30",
		"--batch", "4", "--lr", "1e-2", "--schedule", "constant", "--threads", "1", "--log-json", logPath)
	if !strings.Contains(stdout, "task: MSE on last_state") {
		t.Errorf("stdout %q: want MSE on last_state", stdout)
	}
	recs = trainLogLines(t, logPath)
	first, last = recs[0]["loss"], recs[len(recs)-1]["loss"]
	t.Logf("gpt2-past-torch16: MSE %.4f -> %.4f in 30 steps", first, last)
	if !(last < 0.6*first) {
		t.Errorf("MSE did not fall clearly: %v -> %v", first, last)
	}
	ad, err := adapter.LoadDir(filepath.Join(dir, "gpt2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ad.Extra) == 0 {
		t.Errorf("the adapter holds none of the trainable biases and ln_f")
	}
}

func TestTrainProgressLine(t *testing.T) {
	r := train.StepResult{Step: 12, Total: 48, Loss: 3.14159, LR: 2e-4}
	got := trainProgressLine(r, 6*time.Second, 12)
	want := "step 12/48 [======                  ] loss 3.1416 lr 2.00e-04 500ms/step eta 18s"
	if got != want {
		t.Errorf("unexpected progress line:\n got %q\nwant %q", got, want)
	}
	var buf bytes.Buffer
	p := newTrainProgress(&buf) // not a terminal: draws nothing
	p.update(r)
	p.done()
	if buf.Len() != 0 {
		t.Errorf("progress bar drawn on a non-terminal: %q", buf.String())
	}
}

// TestTrainPrefix trains the prefix of a decoder that "peftonnx prefix"
// gave one.
func TestTrainPrefix(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	base := savedLlama(t, dir, "llama.onnx", false)
	prefixed := filepath.Join(dir, "prefixed.onnx")
	runOK(t, "prefix", base, "-o", prefixed, "--tokens", "4")
	data := trainCountingData(t, dir, "train.jsonl", 8, 8, 32)
	logPath := filepath.Join(dir, "log.jsonl")
	out := filepath.Join(dir, "out")
	runOK(t, "train", prefixed, "--data", data, "--out", out, "--steps", "30", "--batch", "4", "--lr", "1e-1",
		"--schedule", "constant", "--threads", "1", "--log-json", logPath)
	recs := trainLogLines(t, logPath)
	first, last := recs[0]["loss"], recs[len(recs)-1]["loss"]
	// A random tiny model's near-zero logits move slowly through a prefix:
	// a fall is all this asks.
	if !(last < first-0.02) {
		t.Errorf("prefix training did not lower the loss: %v -> %v", first, last)
	}
	ad, err := adapter.LoadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if ad.Prefix == nil || ad.Prompt == nil {
		t.Fatalf("the saved adapter is not a prefix adapter: %+v", ad.Config())
	}
	o, e, code := cli(t, "train", prefixed, "--data", data, "--out", filepath.Join(dir, "x"), "--merged", filepath.Join(dir, "m.onnx"))
	wantError(t, "merged prefix", o, e, code, 1, "carries a prefix")
}

// TestTrainLoRAPlus checks LoRA+ end to end: inject records
// --lora-plus-scale in the adapter config, train applies it, and
// train --lora-plus-scale on a model injected without it gives the same
// adapter; a plain run gives another.
func TestTrainLoRAPlus(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.onnx")
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(base, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	plain, plus := filepath.Join(dir, "plain.onnx"), filepath.Join(dir, "plus.onnx")
	runOK(t, "inject", base, "-o", plain, "--target", ".*_proj", "--seed", "3")
	runOK(t, "inject", base, "-o", plus, "--target", ".*_proj", "--seed", "3", "--lora-plus-scale", "4")
	data := trainCountingData(t, dir, "train.jsonl", 8, 8, 32)
	train := func(model, out string, extra ...string) []byte {
		args := append([]string{"train", model, "--data", data, "--out", filepath.Join(dir, out), "--steps", "3", "--batch", "4",
			"--lr", "1e-2", "--schedule", "constant", "--threads", "1"}, extra...)
		runOK(t, args...)
		b, err := os.ReadFile(filepath.Join(dir, out, adapter.HFWeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fromConfig := train(plus, "from-config")
	fromFlag := train(plain, "from-flag", "--lora-plus-scale", "4")
	none := train(plain, "none")
	if !bytes.Equal(fromConfig, fromFlag) {
		t.Error("lora_plus_scale 4 from the adapter config and --lora-plus-scale 4 trained different adapters")
	}
	if bytes.Equal(fromConfig, none) {
		t.Error("LoRA+ scale 4 trained the same adapter as scale 1")
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "from-config", adapter.HFConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"lora_plus_scale": 4`) {
		t.Errorf("adapter_config.json does not record lora_plus_scale 4:\n%s", cfg)
	}
	_, errOut, code := cli(t, "train", plain, "--data", data, "--out", filepath.Join(dir, "bad"), "--lora-plus-scale", "-2")
	if code == 0 || !strings.Contains(errOut, "--lora-plus-scale must be 0 or more") {
		t.Errorf("--lora-plus-scale -2: exit %d, stderr %q", code, errOut)
	}
}
