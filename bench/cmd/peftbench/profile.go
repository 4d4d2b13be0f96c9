package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// cmdProfile profiles one training step on each side, alone (not
// interleaved: a profile is about where the time goes, not about the
// ratio): ONNX Runtime's trace for peftonnx, grouped by op type and by
// what part of the model the node belongs to, and torch's profiler for
// PyTorch.
func cmdProfile(args []string) error {
	fs, c, t := trainCommand("profile", 1)
	// Three warmup steps: the first runs of a shape still grow ONNX
	// Runtime's arena and fault its memory in.
	fs.Lookup("warmup").DefValue = "3"
	fs.Set("warmup", "3")
	full := fs.Bool("full", false, "profile full fine-tuning instead of LoRA")
	top := fs.Int("top", 15, "rows per table")
	fs.Parse(args)
	e, err := c.env()
	if err != nil {
		return err
	}
	mode := modeTrainLoRA
	if *full {
		mode = modeTrainFull
	}
	dir, err := exportSpec(c.cache(), t.size, t.batch, t.seq, 1000)
	if err != nil {
		return err
	}
	logf("profile: %s, %s model, batch %d, seq %d, %d threads", mode, t.size, t.batch, t.seq, e.threads)

	// peftonnx: a worker with ONNX Runtime's profiler on, warmup + 1 step.
	tmp, err := os.MkdirTemp("", "peftbench-profile")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	prefix := filepath.Join(tmp, "ort")
	cmd := exec.Command(e.self, "worker", "--dir", dir, "--mode", mode, "--threads", strconv.Itoa(e.threads))
	cmd.Env = append(os.Environ(), "PEFTBENCH_ORT_PROFILE="+prefix)
	cmd.Stdin = strings.NewReader(strings.Repeat("step\n", t.warmup+1) + "quit\n")
	cmd.Stderr = os.Stderr
	if _, err := cmd.Output(); err != nil {
		return fmt.Errorf("peftbench: profiling peftonnx: %w", err)
	}
	traces, _ := filepath.Glob(prefix + "*.json")
	if len(traces) != 1 {
		return fmt.Errorf("peftbench: ONNX Runtime wrote %d traces, want 1", len(traces))
	}
	p, err := readORTTrace(traces[0])
	if err != nil {
		return err
	}

	// PyTorch: torch_llama.py profile.
	cmd = exec.Command(e.python, e.script, "profile", "--dir", dir, "--mode", mode, "--threads", strconv.Itoa(e.threads),
		"--warmup", strconv.Itoa(t.warmup), "--top", strconv.Itoa(*top))
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS="+strconv.Itoa(e.threads))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("peftbench: profiling PyTorch: %w", err)
	}
	var tp struct {
		StepMS float64 `json:"step_ms"`
		Ops    []struct {
			Name  string  `json:"name"`
			MS    float64 `json:"ms"`
			Calls int     `json:"calls"`
		} `json:"ops"`
	}
	if err := json.Unmarshal(out, &tp); err != nil {
		return fmt.Errorf("peftbench: PyTorch's profile: %w", err)
	}

	fmt.Printf("peftonnx: step %.0f ms, kernels %.0f ms (the rest: feeding, AdamW in Go, ORT overhead)\n\n", p.runMS, p.totalMS)
	fmt.Print(profileTable("part of the model (grad = backward)", p.byPart, p.totalMS, *top))
	fmt.Println()
	fmt.Print(profileTable("ONNX op", p.byOp, p.totalMS, *top))
	fmt.Println()
	fmt.Print(profileTable("node", p.byNode, p.totalMS, *top))
	fmt.Printf("\nPyTorch: step %.0f ms\n\n| torch op | ms | calls |\n|---|---:|---:|\n", tp.StepMS)
	for _, o := range tp.Ops {
		fmt.Printf("| %s | %.1f | %d |\n", o.Name, o.MS, o.Calls)
	}
	return nil
}

// ortProfile sums the kernel times of the last run in an ONNX Runtime
// trace.
type ortProfile struct {
	runMS, totalMS       float64
	byOp, byPart, byNode map[string]float64
}

// readORTTrace reads an ONNX Runtime profile (Chrome trace JSON) and sums
// the kernel times of its last model_run.
func readORTTrace(path string) (*ortProfile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var evs []struct {
		Cat  string         `json:"cat"`
		Name string         `json:"name"`
		TS   float64        `json:"ts"`
		Dur  float64        `json:"dur"`
		Args map[string]any `json:"args"`
	}
	if err := json.Unmarshal(b, &evs); err != nil {
		return nil, fmt.Errorf("peftbench: %s: %w", path, err)
	}
	var t0, t1 float64
	p := &ortProfile{byOp: map[string]float64{}, byPart: map[string]float64{}, byNode: map[string]float64{}}
	for _, e := range evs {
		if e.Cat == "Session" && e.Name == "model_run" && e.TS >= t0 {
			t0, t1 = e.TS, e.TS+e.Dur
			p.runMS = e.Dur / 1e3
		}
	}
	for _, e := range evs {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") || e.TS < t0 || e.TS > t1 {
			continue
		}
		ms := e.Dur / 1e3
		node := strings.TrimSuffix(e.Name, "_kernel_time")
		op, _ := e.Args["op_name"].(string)
		p.totalMS += ms
		p.byOp[op] += ms
		p.byNode[node] += ms
		p.byPart[modelPart(node)] += ms
	}
	return p, nil
}

var layerRE = regexp.MustCompile(`/layers\.\d+/`)

// modelPart names the part of the model a node belongs to, from its name:
// "grad attention", "mlp", "loss", "lm_head", …, the layer index left out.
func modelPart(node string) string {
	grad := strings.HasPrefix(node, "grad/")
	n := layerRE.ReplaceAllString(node, "/layers.N/")
	var part string
	switch {
	case strings.Contains(n, "lora"):
		part = "LoRA branches"
	case strings.Contains(n, "causal_lm_loss"):
		part = "loss (log-softmax, cross entropy)"
	case strings.Contains(n, "/lm_head"):
		part = "lm_head"
	case strings.Contains(n, "q_proj") || strings.Contains(n, "k_proj") || strings.Contains(n, "v_proj") || strings.Contains(n, "o_proj"):
		part = "attention projections"
	case strings.Contains(n, "self_attn"):
		part = "attention core (RoPE, scores, softmax)"
	case strings.Contains(n, "/mlp"):
		part = "MLP"
	case strings.Contains(n, "layernorm") || strings.Contains(n, "/norm"):
		part = "RMSNorm"
	case strings.Contains(n, "embed_tokens"):
		part = "embedding"
	case strings.Contains(n, "/layers.N/"):
		part = "residual adds"
	default:
		part = "other (masks, RoPE tables, shapes)"
	}
	if grad {
		return "grad " + part
	}
	return part
}

// profileTable renders the largest entries of m as a Markdown table.
func profileTable(what string, m map[string]float64, total float64, top int) string {
	type kv struct {
		k string
		v float64
	}
	var rows []kv
	for k, v := range m {
		rows = append(rows, kv{k, v})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].v > rows[j].v })
	var b strings.Builder
	fmt.Fprintf(&b, "| %s | ms | share |\n|---|---:|---:|\n", what)
	for i, r := range rows {
		if i == top {
			break
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f%% |\n", r.k, r.v, 100*r.v/total)
	}
	return b.String()
}
