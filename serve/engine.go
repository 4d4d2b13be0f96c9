package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/pkgerr"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// Defaults of Options.
const (
	defaultMaxLoRAs    = 8
	defaultMaxCPULoRAs = 64
	defaultMaxBatch    = 8
	defaultMaxQueue    = 64
	defaultMaxTokens   = 256
)

// Engine serves one base model with many adapters. It is safe for
// concurrent use.
type Engine struct {
	opts    Options
	log     *slog.Logger
	sess    *session.Session
	gen     *rt.Generator
	info    rt.DecoderInfo
	stacked *rewrite.Stacked
	base    AdapterInfo

	mu       sync.Mutex
	adapters map[string]*entry // by name; the base is not here
	queue    []*job
	closed   bool
	clock    int64 // ticks on every use of an adapter, for LRU
	stats    Stats

	inflight map[*job]struct{} // admitted and not finished; the scheduler's alone

	wake chan struct{} // a job was queued
	quit chan struct{}
	done chan struct{} // the scheduler has ended
}

func errorf(format string, args ...any) error { return pkgerr.Errorf("serve", format, args...) }

// New loads the base model at modelPath once, rewrites it to take stacked
// LoRA factors per row (rewrite.StackLoRA, or with Options.DoRA
// rewrite.StackDoRA) and opens one session on it.
// The model must be a decoder with a KV cache and logits.
func New(modelPath string, opts Options) (*Engine, error) {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	hash, err := fileHash(modelPath)
	if err != nil {
		return nil, errorf("base model %s: %w", modelPath, err)
	}
	m, err := graph.Load(modelPath)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	stack := rewrite.StackLoRA
	if opts.DoRA {
		stack = rewrite.StackDoRA
	}
	stacked, err := stack(m, opts.Targets...)
	if err != nil {
		return nil, errorf("base model %s: %w", modelPath, err)
	}
	// A DoRA stack keeps the stacked weights of m, which may close, for
	// the gains of every DoRA adapter loaded, until Engine.Close.
	ok := false
	defer func() {
		if !ok {
			stacked.Close()
		}
	}()
	var ropts []rt.Option
	if opts.Threads > 0 {
		ropts = append(ropts, rt.WithIntraOpThreads(opts.Threads))
	}
	sess, err := session.OpenModel(m, session.WithRuntime(ropts...), session.WithName(modelPath))
	if err != nil {
		return nil, err
	}
	gen, err := rt.NewGenerator(sess.Session)
	if err != nil {
		sess.Close()
		return nil, err
	}
	info := gen.Info()
	if !info.Logits {
		sess.Close()
		return nil, errorf("base model %s has no logits output", modelPath)
	}
	if (!info.PositionIDs || !info.AttentionMask) && opts.MaxBatch > 1 {
		// Rows join a batch padded on the left, which a model that
		// computes its own positions would count.
		opts.Logger.Warn("the base model has no position_ids or attention_mask input: one sequence at a time", "path", modelPath)
		opts.MaxBatch = 1
	}
	e := &Engine{
		opts: opts, log: opts.Logger, sess: sess, gen: gen, info: info, stacked: stacked,
		base:     AdapterInfo{Name: "", Kind: KindBase, Path: modelPath, Hash: hash, Resident: true, LoadedAt: time.Now()},
		adapters: map[string]*entry{},
		inflight: map[*job]struct{}{},
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	e.stats.Adapters = map[string]AdapterStats{}
	e.stats.BatchSizes = make([]int64, opts.MaxBatch+1)
	ok = true
	go e.schedule()
	e.log.Info("base model loaded", "path", modelPath, "layers", info.Layers, "linears", len(stacked.Sites), "dora", opts.DoRA)
	return e, nil
}

// withDefaults fills in the zero options.
func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxLoRAs, defaultMaxLoRAs)
	def(&o.MaxCPULoRAs, defaultMaxCPULoRAs)
	def(&o.MaxBatch, defaultMaxBatch)
	def(&o.MaxQueue, defaultMaxQueue)
	def(&o.MaxTokens, defaultMaxTokens)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// check refuses negative options.
func (o Options) check() error {
	for _, v := range []struct {
		name string
		v    int
	}{{"MaxLoRAs", o.MaxLoRAs}, {"MaxCPULoRAs", o.MaxCPULoRAs}, {"MaxBatch", o.MaxBatch}, {"MaxJoin", o.MaxJoin}, {"MaxQueue", o.MaxQueue},
		{"MaxTokens", o.MaxTokens}, {"MaxSeqLen", o.MaxSeqLen}, {"Threads", o.Threads}} {
		if v.v < 0 {
			return errorf("option %s must not be negative, got %d", v.name, v.v)
		}
	}
	return nil
}

// Close stops the engine: requests in flight and queued end with an error
// that wraps ErrClosed; then the session closes, and the stacked weights
// that a DoRA engine reads its adapters' gains from. A Load in progress
// ends with ErrClosed. Closing twice is safe.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.done
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	close(e.quit)
	<-e.done
	return errors.Join(e.sess.Close(), e.stacked.Close())
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Adapters = make(map[string]AdapterStats, len(e.stats.Adapters))
	for k, v := range e.stats.Adapters {
		s.Adapters[k] = v
	}
	s.BatchSizes = append([]int64(nil), e.stats.BatchSizes...)
	s.Queued = len(e.queue)
	s.Resident = 0
	for _, a := range e.adapters {
		a.mu.Lock()
		if a.kind == KindLoRA && a.factors != nil {
			s.Resident++
		}
		s.Reloaded += int64(a.reloads)
		a.mu.Unlock()
	}
	return s
}

// fileHash returns the hex sha256 of the file at path.
func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
