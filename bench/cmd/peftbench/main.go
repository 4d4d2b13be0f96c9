// Command peftbench sets peftonnx beside PyTorch on the same work, on one
// machine, in one go: LoRA training steps, full fine-tuning, inference and
// how they scale, and a step-by-step parity check.
//
// Both sides run the LLaMA-style decoder of models.Llama with the same
// weights (exported from the Go builder), the same batches and the same
// initial adapter. PyTorch runs bench/torch_llama.py, which writes out the
// model and HF PEFT's LoRA math in plain torch. Each side runs in its own
// worker process, so that peak memory is per side, and the two take steps
// in turn (A B A B …), so that a noisy machine slows both alike; the
// report gives medians and peftonnx/PyTorch ratios.
//
// Usage:
//
//	peftbench all      [flags]   everything below; writes bench/results/
//	peftbench parity   [flags]   step-1 loss and 20-step adapter parity
//	peftbench train    [flags]   LoRA (or -full) training steps
//	peftbench forward  [flags]   forward latency: base, adapted, merged
//	peftbench scale    [flags]   step time and memory against seq and size
//	peftbench profile  [flags]   where one training step spends its time, per side
//	peftbench sgemm    [flags]   the machine's SGEMM rate through ONNX Runtime, and each row's work
//	peftbench memory   [flags]   where peftonnx's memory goes, setup and step by step
//	peftbench serve    [flags]   the serving engine: clients, adapters, memory
//	peftbench report   [flags]   render results.md and scaling.png from results.json
//
// Run "peftbench <command> -h" for the flags. The bench Makefile targets
// call it with the right Python; see bench/README.md.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A command is one "peftbench NAME ..." subcommand, as in cmd/peftonnx:
// its name, a line for the usage, and the function that parses its flags
// and runs it. Hidden commands are the workers' internal entry points.
type command struct {
	name    string
	summary string
	run     func(args []string) error
	hidden  bool
}

// commands are peftbench's subcommands, in the order usage lists them.
var commands = []command{
	{name: "all", summary: "parity, LoRA and full training, inference and scaling; writes the report", run: cmdAll},
	{name: "parity", summary: "step-1 loss and adapter weights after 20 AdamW steps, against PyTorch", run: cmdParity},
	{name: "train", summary: "training step time, tokens/s and peak RSS (LoRA, or -full)", run: cmdTrain},
	{name: "forward", summary: "forward latency at batch 1 and 8: base, adapted, merged", run: cmdForward},
	{name: "scale", summary: "step time and memory against sequence length and model size", run: cmdScale},
	{name: "profile", summary: "where one training step spends its time, on each side", run: cmdProfile},
	{name: "sgemm", summary: "the yardstick alone: ONNX Runtime's SGEMM rate, and at the model's shapes", run: cmdSGEMM},
	{name: "memory", summary: "where peftonnx's memory goes: resident memory after setup and each step", run: cmdMemory},
	{name: "serve", summary: "the serving engine: tokens/s with 1 and 8 clients on the base and on 8 adapters, memory with 100 adapters", run: cmdServe},
	{name: "report", summary: "render results.md and scaling.png again from results.json", run: cmdReport},
	{name: "export", summary: "export a model and its batches for both sides", run: cmdExport},
	{name: "worker", summary: "a side's worker process (started by the others)", run: cmdWorker, hidden: true},
	{name: "grads", summary: "the step-1 gradients of an export folder (parity's diagnosis)", run: cmdGrads, hidden: true},
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		return
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		fmt.Fprintf(os.Stderr, "peftbench: unknown command %q\n", name)
		usage()
		os.Exit(2)
	}
	if err := commands[i].run(args); err != nil {
		if !errors.Is(err, errParity) {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

func usage() {
	var b strings.Builder
	b.WriteString("usage: peftbench <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprint(os.Stderr, b.String())
}

// cmdGrads writes the step-1 gradients of an export folder.
func cmdGrads(args []string) error {
	fs := flag.NewFlagSet("grads", flag.ExitOnError)
	dir := fs.String("dir", "", "export folder")
	out := fs.String("out", "", "safetensors file to write")
	threads := fs.Int("threads", runtime.NumCPU(), "ORT intra-op threads")
	fs.Parse(args)
	return runGoGrads(*dir, *out, *threads)
}

// errParity is returned when a parity check fails; the check has said why.
var errParity = errors.New("peftbench: parity failed")

// common are the flags every measuring command takes.
type common struct {
	out     string
	python  string
	script  string
	threads int
}

func (c *common) register(fs *flag.FlagSet) {
	py := os.Getenv("BENCH_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	fs.StringVar(&c.out, "out", filepath.Join("bench", "results"), "folder for exports and results")
	fs.StringVar(&c.python, "python", py, "the Python that imports torch (default $BENCH_PYTHON or /usr/bin/python3)")
	fs.StringVar(&c.script, "torch-script", filepath.Join("bench", "torch_llama.py"), "the PyTorch side")
	fs.IntVar(&c.threads, "threads", runtime.NumCPU(), "threads for each side: ORT intra-op threads and torch.set_num_threads")
}

// env returns the worker environment the flags describe.
func (c *common) env() (env, error) {
	self, err := os.Executable()
	if err != nil {
		return env{}, err
	}
	if _, err := os.Stat(c.script); err != nil {
		return env{}, fmt.Errorf("peftbench: %w (run from the repository root, or pass -torch-script)", err)
	}
	if c.threads <= 0 {
		return env{}, fmt.Errorf("peftbench: -threads %d: want > 0", c.threads)
	}
	if l := loadAvg(); l > 0.5*float64(runtime.NumCPU()) {
		logf("warning: the load average is %.1f on %d cores: other work competes for the CPUs. The sides take turns, so both feel it, but thread pools that spin (OpenMP, ONNX Runtime) suffer from it unevenly; -threads 1 gives steadier ratios.", l, runtime.NumCPU())
	}
	return env{python: c.python, script: c.script, self: self, threads: c.threads}, nil
}

// cache returns the folder that holds the exports.
func (c *common) cache() string { return filepath.Join(c.out, "cache") }

func cmdWorker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	dir := fs.String("dir", "", "export folder")
	mode := fs.String("mode", "", "one of "+strings.Join(workerModes, ", "))
	batch := fs.Int("batch", 0, "rows per batch (0: the export's)")
	threads := fs.Int("threads", runtime.NumCPU(), "ORT intra-op threads")
	fs.Parse(args)
	return runWorker(*dir, *mode, *batch, *threads)
}

func cmdExport(args []string) error {
	fs, c := commonFlagSet("export")
	size := fs.String("size", "tiny", "model size: "+strings.Join(sizeNames(), ", "))
	batch := fs.Int("batch", 8, "batch size")
	seq := fs.Int("seq", 128, "sequence length")
	steps := fs.Int("steps", 20, "steps of the linear schedule")
	fs.Parse(args)
	dir, err := exportSpec(c.cache(), *size, *batch, *seq, *steps)
	if err != nil {
		return err
	}
	fmt.Println(dir)
	return nil
}

// parityFlags are parity's own flags, shared with all.
type parityFlags struct {
	sizes string
	steps int
	batch int
	seq   int
}

func (p *parityFlags) register(fs *flag.FlagSet, sizes string) {
	fs.StringVar(&p.sizes, "parity-sizes", sizes, "comma-separated model sizes to check parity on")
	fs.IntVar(&p.steps, "parity-steps", 20, "AdamW steps before the adapters are compared")
	fs.IntVar(&p.batch, "parity-batch", 8, "parity batch size")
	fs.IntVar(&p.seq, "parity-seq", 128, "parity sequence length")
}

// run checks parity on every size, with HF's init (B = 0) and with a
// random B, and returns the results; err is errParity when one fails.
func (p *parityFlags) run(e env, cache string) ([]*ParityResult, error) {
	var out []*ParityResult
	failed := false
	for _, size := range splitList(p.sizes) {
		for _, randomB := range []bool{false, true} {
			s, err := newSpec(size, p.batch, p.seq, p.steps)
			if err != nil {
				return out, err
			}
			s.RandomB = randomB
			r, err := e.parity(cache, s)
			if err != nil {
				return out, err
			}
			out = append(out, r)
			failed = failed || !r.Pass
		}
	}
	if failed {
		return out, errParity
	}
	return out, nil
}

func cmdParity(args []string) error {
	fs, c := commonFlagSet("parity")
	var p parityFlags
	p.register(fs, "tiny,mini")
	fs.Parse(args)
	e, err := c.env()
	if err != nil {
		return err
	}
	res, err := p.run(e, c.cache())
	fmt.Print(parityTable(res))
	if werr := writeJSON(filepath.Join(c.out, "parity.json"), res); werr != nil && err == nil {
		err = werr
	}
	return err
}

// trainFlags say how long each comparison runs.
type trainFlags struct {
	size   string
	batch  int
	seq    int
	warmup int
	steps  int
}

func (t *trainFlags) register(fs *flag.FlagSet, steps int) {
	fs.StringVar(&t.size, "size", "base", "model size: "+strings.Join(sizeNames(), ", "))
	fs.IntVar(&t.batch, "batch", 8, "batch size")
	fs.IntVar(&t.seq, "seq", 128, "sequence length")
	// Two: an inference session lays out ONNX Runtime's memory pattern on
	// the second run of a shape, which is slower than the runs after it
	// (training sessions run without patterns, but the first steps still
	// grow the arena).
	fs.IntVar(&t.warmup, "warmup", 2, "untimed steps per side before timing")
	fs.IntVar(&t.steps, "steps", steps, "timed steps per side")
}

// point is the comparison of mode at t's size, batch and sequence length.
func (t trainFlags) point(name, mode string, steps int) point {
	return point{name: name, size: t.size, mode: mode, batch: t.batch, seq: t.seq, warmup: t.warmup, steps: steps}
}

// registerTrainMode adds the -full and -low-memory flags, and returns what
// they select once parsed: the worker mode and its row's name.
func registerTrainMode(fs *flag.FlagSet) func() (mode, name string) {
	full := fs.Bool("full", false, "full fine-tuning instead of LoRA")
	lowMem := fs.Bool("low-memory", false, "LoRA with ONNX Runtime's pre-packing off, as peftonnx train --low-memory")
	int4 := fs.Bool("int4", false, "QLoRA: LoRA on the base quantized to int4 (PyTorch runs its float32 LoRA step)")
	int4Emb := fs.Bool("int4-embeddings", false, "with -int4, the token embedding int4 too (GatherBlockQuantized; sets "+int4EmbeddingsEnv+"=1)")
	return func() (string, string) {
		if *int4Emb {
			os.Setenv(int4EmbeddingsEnv, "1")
		}
		switch {
		case *full:
			return modeTrainFull, "full fine-tuning step"
		case *int4:
			return modeTrainQLoRA, qloraRow
		case *lowMem:
			return modeTrainLoRALowMem, "LoRA training step, --low-memory"
		}
		return modeTrainLoRA, "LoRA training step"
	}
}

// point is one comparison to make: a model of size at batch × seq,
// exported once, with worker mode run at runBatch (0: the export's batch)
// for warmup untimed and steps timed steps per side.
type point struct {
	name, size, mode     string
	batch, seq, runBatch int
	warmup, steps        int
	// sequential runs one side after the other instead of interleaved,
	// where both would not fit in memory at once.
	sequential bool
}

// comparison exports p's spec and compares p.mode on both sides.
func (e env) comparison(cache string, p point) (*Comparison, error) {
	dir, err := exportFor(cache, p.size, p.batch, p.seq, 1000, p.mode)
	if err != nil {
		return nil, err
	}
	return e.compare(dir, p)
}

// trainCommand starts the flags of a subcommand that runs one model size
// and shape: the common flags and the train flags, with steps steps by
// default.
func trainCommand(name string, steps int) (*flag.FlagSet, *common, *trainFlags) {
	fs, c := commonFlagSet(name)
	t := &trainFlags{}
	t.register(fs, steps)
	return fs, c, t
}

// commonFlagSet returns the flag set of the command name with the flags that
// every benchmark takes registered.
func commonFlagSet(name string) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	c := &common{}
	c.register(fs)
	return fs, c
}

func cmdTrain(args []string) error {
	fs, c, t := trainCommand("train", 5)
	which := registerTrainMode(fs)
	fs.Parse(args)
	e, err := c.env()
	if err != nil {
		return err
	}
	mode, name := which()
	r, err := e.comparison(c.cache(), t.point(name, mode, t.steps))
	if r != nil {
		fmt.Print(comparisonTable([]*Comparison{r}))
	}
	return err
}

func cmdForward(args []string) error {
	fs, c, t := trainCommand("forward", 10)
	fs.Parse(args)
	e, err := c.env()
	if err != nil {
		return err
	}
	res, err := e.forwardSet(c.cache(), *t)
	fmt.Print(comparisonTable(res))
	return err
}

// forwardSet times the forward pass of the base, adapted and merged
// models at batch 1 and at t.batch.
func (e env) forwardSet(cache string, t trainFlags) ([]*Comparison, error) {
	var out []*Comparison
	for _, b := range uniqueInts(1, t.batch) {
		for _, m := range []struct{ mode, name string }{
			{modeForwardBase, "forward, base"},
			{modeForwardLoRA, "forward, adapted"},
			{modeForwardMerged, "forward, merged"},
			{modeForwardInt4, "forward, int4 base"},
			{modeForwardInt4LoRA, "forward, int4 adapted"},
			{modeForwardInt4Merged, "forward, int4 merged (requantized)"},
		} {
			p := t.point(fmt.Sprintf("%s, batch %d", m.name, b), m.mode, t.steps)
			p.runBatch = b
			r, err := e.comparison(cache, p)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// scaleFlags say what the scaling sweep covers.
type scaleFlags struct {
	seqs   string
	sizes  string
	seqAt  string
	warmup int
	steps  int
}

func (s *scaleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.seqs, "scale-seqs", "64,128,256,512", "sequence lengths of the sweep (on -scale-size)")
	fs.StringVar(&s.seqAt, "scale-size", "base", "model size of the sequence sweep")
	fs.StringVar(&s.sizes, "scale-sizes", "tiny,mini,small,base", "model sizes of the size sweep (at seq 128)")
	fs.IntVar(&s.warmup, "scale-warmup", 2, "untimed steps per point and side")
	fs.IntVar(&s.steps, "scale-steps", 3, "timed steps per point and side")
}

// run sweeps LoRA training over sequence lengths and model sizes at
// batch 8.
func (s *scaleFlags) run(e env, cache string, batch int) (seqs, sizes []*Comparison, err error) {
	for _, v := range splitList(s.seqs) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			return seqs, sizes, fmt.Errorf("peftbench: -scale-seqs: bad length %q", v)
		}
		name := fmt.Sprintf("LoRA step, %s, seq %d", s.seqAt, n)
		sequential := false
		if len(seqs) > 0 {
			// Interleaving keeps both workers alive at once. Where their
			// memory, extrapolated linearly from the last point, would
			// not fit, the sides run one after the other; where one
			// alone would not fit, the point is left out, rather than
			// have the kernel kill a worker (or someone else's process).
			last := seqs[len(seqs)-1]
			if last.Failed == "" {
				grow := float64(n) / float64(last.Seq)
				peft, torch := last.Peft.PeakRSSMB*grow, last.Torch.PeakRSSMB*grow
				avail := memAvailableMB()
				switch {
				case avail <= 0 || peft+torch < 0.9*avail:
				case max(peft, torch) < 0.95*avail:
					sequential = true
				default:
					spec, _ := newSpec(s.seqAt, batch, n, 1)
					seqs = append(seqs, &Comparison{Name: name, Mode: modeTrainLoRA, Size: s.seqAt, Params: spec.Model.Params, Batch: batch, Seq: n,
						Failed: fmt.Sprintf("skipped: peftonnx would need about %.0f GiB and PyTorch %.0f GiB; %.0f GiB is available", peft/1024, torch/1024, avail/1024)})
					logf("%s: %s", name, seqs[len(seqs)-1].Failed)
					continue
				}
			}
		}
		r, err := e.comparison(cache, point{name: name, size: s.seqAt, mode: modeTrainLoRA, batch: batch, seq: n, warmup: s.warmup, steps: s.steps, sequential: sequential})
		if err != nil {
			return seqs, sizes, err
		}
		seqs = append(seqs, r)
	}
	for _, z := range splitList(s.sizes) {
		if i := slices.IndexFunc(seqs, func(c *Comparison) bool { return c.Size == z && c.Seq == 128 }); i >= 0 {
			sizes = append(sizes, seqs[i]) // measured in the sequence sweep
			continue
		}
		r, err := e.comparison(cache, point{name: fmt.Sprintf("LoRA step, %s, seq 128", z), size: z, mode: modeTrainLoRA, batch: batch, seq: 128, warmup: s.warmup, steps: s.steps})
		if err != nil {
			return seqs, sizes, err
		}
		sizes = append(sizes, r)
	}
	return seqs, sizes, nil
}

func cmdScale(args []string) error {
	fs, c := commonFlagSet("scale")
	var s scaleFlags
	s.register(fs)
	batch := fs.Int("batch", 8, "batch size")
	fs.Parse(args)
	e, err := c.env()
	if err != nil {
		return err
	}
	seqs, sizes, err := s.run(e, c.cache(), *batch)
	fmt.Print(comparisonTable(append(seqs, sizes...)))
	if perr := writeScalePlot(filepath.Join(c.out, "scaling.png"), seqs, sizes); perr != nil && err == nil {
		err = perr
	}
	return err
}

func cmdAll(args []string) error {
	fs, c := commonFlagSet("all")
	var p parityFlags
	var t trainFlags
	var s scaleFlags
	p.register(fs, "tiny,mini")
	t.register(fs, 5)
	s.register(fs)
	fullSteps := fs.Int("full-steps", 3, "timed steps of full fine-tuning per side")
	fwdSteps := fs.Int("forward-steps", 10, "timed forward passes per point and side")
	noScale := fs.Bool("no-scale", false, "skip the scaling sweep")
	noServe := fs.Bool("no-serve", false, "skip the serving benchmark")
	var sv serveFlags
	sv.register(fs)
	fs.Parse(args)
	e, err := c.env()
	if err != nil {
		return err
	}
	start := time.Now()
	rep := &Report{Date: start.UTC().Format("2006-01-02"), Machine: describeMachine(), Command: "peftbench all " + strings.Join(args, " ")}
	rep.Machine.Threads = e.threads
	// The report is written after every part, so that a run cut short
	// leaves what it measured.
	save := func() error {
		rep.fillVersions()
		rep.Duration = time.Since(start).Round(time.Second).String()
		return rep.write(c.out)
	}

	rep.Parity, err = p.run(e, c.cache())
	if err != nil && !errors.Is(err, errParity) {
		return err
	}
	parityErr := err

	cache := c.cache()
	for _, r := range []struct {
		name, mode string
		steps      int
	}{
		{"LoRA training step", modeTrainLoRA, t.steps},
		{"LoRA training step, --low-memory", modeTrainLoRALowMem, t.steps},
		{"full fine-tuning step", modeTrainFull, *fullSteps},
		{qloraRow, modeTrainQLoRA, t.steps},
	} {
		cmp, err := e.comparison(cache, t.point(r.name, r.mode, r.steps))
		if err != nil {
			return err
		}
		rep.Train = append(rep.Train, cmp)
		if err := save(); err != nil {
			return err
		}
	}
	ft := t
	ft.steps = *fwdSteps
	ft.warmup = max(t.warmup, 2)
	if rep.Forward, err = e.forwardSet(cache, ft); err != nil {
		return err
	}
	if err := save(); err != nil {
		return err
	}
	if !*noScale {
		if rep.ScaleSeq, rep.ScaleSize, err = s.run(e, cache, t.batch); err != nil {
			return err
		}
		if err := writeScalePlot(filepath.Join(c.out, "scaling.png"), rep.ScaleSeq, rep.ScaleSize); err != nil {
			return err
		}
	}
	if !*noServe {
		if rep.Serve, err = sv.run(cache, e.threads); err != nil {
			return err
		}
	}
	if err := save(); err != nil {
		return err
	}
	fmt.Print(rep.Markdown())
	return parityErr
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	out := fs.String("out", filepath.Join("bench", "results"), "folder holding results.json")
	fs.Parse(args)
	b, err := os.ReadFile(filepath.Join(*out, "results.json"))
	if err != nil {
		return fmt.Errorf("peftbench: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("peftbench: %s: %w", filepath.Join(*out, "results.json"), err)
	}
	if err := writeScalePlot(filepath.Join(*out, "scaling.png"), rep.ScaleSeq, rep.ScaleSize); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(*out, "results.md"), []byte(rep.Markdown())); err != nil {
		return err
	}
	fmt.Print(rep.Markdown())
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// uniqueInts returns the distinct values of v in order.
func uniqueInts(v ...int) []int {
	var out []int
	for _, x := range v {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// logf writes a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peftbench: "+format+"\n", args...)
}

// human formats a parameter count: 124.4M, 35.1K.
func human(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}
