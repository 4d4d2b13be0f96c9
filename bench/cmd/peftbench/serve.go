package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/serve"
	"github.com/peftonnx/peftonnx/session"
)

// ServeResult is what "peftbench serve" measured: the serving engine
// (package serve) on one base model with LoRA adapters.
type ServeResult struct {
	Size      string     `json:"size"`
	Params    int64      `json:"params"`
	NewTokens int        `json:"new_tokens"`
	Requests  int        `json:"requests_per_client"`
	Rounds    int        `json:"rounds"`
	Threads   int        `json:"threads"`
	Rows      []ServeRow `json:"rows"`
	// The goals' ratios: 8 clients on 8 adapters against 1 client on one
	// adapter and against 8 clients on the base; an unmerged adapter
	// through the engine against its merged model on runtime's Generator.
	EightVsOne, AdaptersVsBase, UnmergedVsMerged float64
	// Resident memory of the process with 0, 1 and 100 adapters loaded
	// (the last after the comparison's merged model is closed), and the
	// adapters' own bytes, MiB.
	RSS0MB, RSS1MB, RSS100MB  float64
	Adapter1MB, Adapters100MB float64
	LoadToFirstTokenMS        float64 `json:"load_to_first_token_ms"`
}

// ServeRow is one scenario.
type ServeRow struct {
	Name       string  `json:"name"`
	Clients    int     `json:"clients"`
	Adapters   int     `json:"adapters"`
	TokensPerS float64 `json:"tokens_per_s"`
	MSPerToken float64 `json:"ms_per_token"` // per client, prefill included
}

// serveFlags are serve's own flags, shared with all.
type serveFlags struct {
	size     string
	tokens   int
	requests int
	rounds   int
}

func (s *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.size, "serve-size", "base", "model size of the serving benchmark: "+strings.Join(sizeNames(), ", "))
	fs.IntVar(&s.tokens, "serve-tokens", 16, "tokens generated per request")
	fs.IntVar(&s.requests, "serve-requests", 4, "requests per client, scenario and round")
	fs.IntVar(&s.rounds, "serve-rounds", 3, "rounds of all scenarios in turn; rows are medians")
}

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	var c common
	var s serveFlags
	c.register(fs)
	s.register(fs)
	fs.Parse(args)
	res, err := s.run(c.cache(), c.threads)
	if err != nil {
		return err
	}
	fmt.Print(serveTable(res))
	return writeJSON(filepath.Join(c.out, "serve.json"), res)
}

// run builds the model and 8 adapters under dir and measures.
func (s serveFlags) run(dir string, threads int) (*ServeResult, error) {
	cfg, err := modelConfig(s.size)
	if err != nil {
		return nil, err
	}
	cfg.NoCache = false
	dir = filepath.Join(dir, "serve-"+s.size)
	m, err := models.Llama(cfg)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	base := filepath.Join(dir, "model.onnx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("peftbench: %w", err)
	}
	if err := m.Save(base, graph.SaveOptions{ExternalData: true}); err != nil {
		return nil, err
	}
	linears, err := rewrite.FindLinears(m)
	if err != nil {
		return nil, err
	}
	// Eight adapters, rank 4 on q and v or rank 8 on k, o and down.
	var paths []string
	var first *adapter.Adapter
	for i := range 8 {
		r, targets := 4, []string{"q_proj", "v_proj"}
		if i%2 == 1 {
			r, targets = 8, []string{"k_proj", "o_proj", "down_proj"}
		}
		ad := randomLoRA(linears, r, targets, uint64(i))
		if i == 0 {
			first = ad
		}
		p := filepath.Join(dir, fmt.Sprintf("adapter%d", i))
		if err := adapter.SaveDir(p, ad); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	res := &ServeResult{Size: s.size, Params: cfg.NumParams(), NewTokens: s.tokens, Requests: s.requests, Rounds: s.rounds, Threads: threads}
	prompt := []int64{1, 5, 9, 3, 7, 2, 4, 4}

	m.Close()
	debug.FreeOSMemory()

	e, err := serve.New(base, serve.Options{MaxBatch: 8, MaxLoRAs: 8, MaxCPULoRAs: 1000, Threads: threads,
		Targets: []string{".*q_proj", ".*k_proj", ".*v_proj", ".*o_proj", ".*down_proj"}})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	res.RSS0MB = settledRSSMB()
	var names []string
	for i, p := range paths {
		name := fmt.Sprintf("ad%d", i)
		if _, err := e.Load(name, p, false); err != nil {
			return nil, err
		}
		names = append(names, name)
		if i == 0 {
			res.RSS1MB, res.Adapter1MB = settledRSSMB(), adapterMB(e)
		}
	}
	// The merged model for comparison, read from the file (its weights
	// mapped, not held twice).
	gen, closeSession, err := mergedGenerator(base, first, threads)
	if err != nil {
		return nil, err
	}
	closeGen := sync.OnceFunc(closeSession)
	defer closeGen()
	request := func(name string, n int) error {
		_, err := e.Generate(context.Background(), serve.Request{Adapter: name, Prompt: prompt, MaxTokens: n}, func(serve.Event) error { return nil })
		return err
	}
	// clients runs requests per client from c concurrent clients, client
	// k's i-th on adapters[(k+i) mod len].
	clients := func(c int, adapters []string, requests int) error {
		var wg sync.WaitGroup
		errs := make(chan error, c)
		for k := range c {
			wg.Go(func() {
				for i := range requests {
					if err := request(adapters[(k+i)%len(adapters)], s.tokens); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	scenarios := []struct {
		name     string
		clients  int
		adapters []string
		run      func(requests int) error
	}{
		{name: "merged model, runtime.Generator (no engine)", clients: 1, adapters: names[:1], run: func(requests int) error {
			for range requests {
				if _, err := gen.Generate(context.Background(), prompt, rt.GenerateOptions{MaxNewTokens: s.tokens}); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "base, 1 client", clients: 1, adapters: []string{""}},
		{name: "unmerged LoRA, 1 client", clients: 1, adapters: names[:1]},
		{name: "base, 8 clients", clients: 8, adapters: []string{""}},
		{name: "8 adapters, 8 clients", clients: 8, adapters: names},
	}
	for i := range scenarios {
		if sc := &scenarios[i]; sc.run == nil {
			sc.run = func(requests int) error { return clients(sc.clients, sc.adapters, requests) }
		}
		// One untimed round first: ONNX Runtime plans each new set of
		// input shapes (the stacked ranks change with the adapters) on
		// its first runs, which a server pays once.
		if err := scenarios[i].run(1); err != nil {
			return nil, err
		}
	}
	// The scenarios take turns, round after round, so that a noisy
	// machine slows each alike; the rows are medians.
	rates := make([][]float64, len(scenarios))
	for range max(1, s.rounds) {
		for i, sc := range scenarios {
			start := time.Now()
			if err := sc.run(s.requests); err != nil {
				return nil, err
			}
			rates[i] = append(rates[i], float64(sc.clients*s.requests*s.tokens)/time.Since(start).Seconds())
		}
	}
	byName := map[string]float64{}
	for i, sc := range scenarios {
		tps := median(rates[i])
		byName[sc.name] = tps
		res.Rows = append(res.Rows, ServeRow{Name: sc.name, Clients: sc.clients, Adapters: len(sc.adapters),
			TokensPerS: tps, MSPerToken: 1000 * float64(sc.clients) / tps})
	}
	res.EightVsOne = byName["8 adapters, 8 clients"] / byName["unmerged LoRA, 1 client"]
	res.AdaptersVsBase = byName["8 adapters, 8 clients"] / byName["base, 8 clients"]
	res.UnmergedVsMerged = byName["unmerged LoRA, 1 client"] / byName[scenarios[0].name]
	closeGen()

	for i := len(names); i < 100; i++ {
		if _, err := e.Load(fmt.Sprintf("ad%d", i), paths[i%len(paths)], false); err != nil {
			return nil, err
		}
	}
	res.RSS100MB, res.Adapters100MB = settledRSSMB(), adapterMB(e)
	start := time.Now()
	if _, err := e.Load("new", paths[1], false); err != nil {
		return nil, err
	}
	if err := request("new", 1); err != nil {
		return nil, err
	}
	res.LoadToFirstTokenMS = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

// randomLoRA is a LoRA adapter of rank r on the layers whose module name
// ends in one of targets, with random A and B (B not zero, so that it
// changes the output).
func randomLoRA(linears []rewrite.Linear, r int, targets []string, seed uint64) *adapter.Adapter {
	cfg := adapter.DefaultLoRAConfig(targets...)
	cfg.R, cfg.Alpha = r, float64(2*r)
	ad := adapter.NewLoRA(cfg)
	rng := rand.New(rand.NewPCG(seed, 11))
	fill := func(n int64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.02)
		}
		return v
	}
	for _, l := range linears {
		for _, t := range targets {
			if strings.HasSuffix(l.Module, "."+t) {
				ad.Weights[l.Module] = adapter.LoRAWeights{
					A: adapter.NewTensor([]int64{l.In, int64(r)}, fill(l.In*int64(r))),
					B: adapter.NewTensor([]int64{int64(r), l.Out}, fill(int64(r)*l.Out)),
				}
			}
		}
	}
	return ad
}

// mergedGenerator opens a Generator on the model at path with ad merged, and returns
// what closes it.
func mergedGenerator(path string, ad *adapter.Adapter, threads int) (*rt.Generator, func(), error) {
	m, err := graph.Load(path)
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	if err := rewrite.MergeAdapter(m, ad); err != nil {
		return nil, nil, err
	}
	s, err := session.OpenModel(m, session.WithRuntime(rt.WithIntraOpThreads(threads)))
	if err != nil {
		return nil, nil, err
	}
	g, err := rt.NewGenerator(s.Session)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return g, func() { s.Close() }, nil
}

// settledRSSMB is rssMB once the Go heap has handed back what it holds
// as garbage.
func settledRSSMB() float64 {
	debug.FreeOSMemory()
	return rssMB()
}

func adapterMB(e *serve.Engine) float64 {
	var n int64
	for _, a := range e.Adapters() {
		n += a.Bytes
	}
	return float64(n) / (1 << 20)
}

// serveTable renders r as Markdown.
func serveTable(r *ServeResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Serving** (package serve), %s (%s), greedy, %d tokens per request, %d requests per client, medians of %d rounds in turn, %d threads:\n\n",
		r.Size, human(r.Params), r.NewTokens, r.Requests, r.Rounds, r.Threads)
	b.WriteString("| scenario | clients | adapters | tokens/s | ms/token per client |\n|---|---:|---:|---:|---:|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %.1f |\n", row.Name, row.Clients, row.Adapters, row.TokensPerS, row.MSPerToken)
	}
	fmt.Fprintf(&b, "\n8 clients on 8 adapters: **%.2f×** one client (goal ≥ 4×), **%.2f×** 8 clients on the base (goal ≥ 0.9×); unmerged LoRA / merged: **%.2f×** (goal ≥ 0.95×). ",
		r.EightVsOne, r.AdaptersVsBase, r.UnmergedVsMerged)
	fmt.Fprintf(&b, "Resident memory %.0f MiB with no adapter, %.0f MiB with 1 (%.2f MiB of factors), %.0f MiB with 100 (%.1f MiB); load request to first token of a new adapter %.1f ms.\n",
		r.RSS0MB, r.RSS1MB, r.Adapter1MB, r.RSS100MB, r.Adapters100MB, r.LoadToFirstTokenMS)
	return b.String()
}
