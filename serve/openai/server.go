package openai

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
	"github.com/peftonnx/peftonnx/serve"
	"github.com/peftonnx/peftonnx/serve/openai/chattemplate"
	"github.com/peftonnx/peftonnx/tokenizer"
)

// Options configure a Server. Zero values take the defaults below.
type Options struct {
	// Tokenizer encodes prompts and decodes completions (required).
	Tokenizer *tokenizer.Tokenizer
	// ChatTemplate is the Jinja source of the chat template; "" leaves
	// /v1/chat/completions answering that there is none.
	ChatTemplate string
	// ModelName is the "model" that names the base. Default "base".
	ModelName string
	// APIKey, when set, is wanted as "Authorization: Bearer KEY" on every
	// endpoint; AdminKey, when set, on load and unload instead.
	APIKey, AdminKey string
	// AdapterRoot is the folder under which lora_path must lie; "" turns
	// loading over HTTP off.
	AdapterRoot string
	// MaxBodyBytes limits a request body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxTokens limits max_tokens. Default 256.
	MaxTokens int
	// MaxPromptTokens limits a prompt's tokens. Default 4096.
	MaxPromptTokens int
	// MaxConcurrent limits the generation requests in flight; beyond it
	// they are answered 429. Default 64.
	MaxConcurrent int
	// Logger receives a line per request; nil discards them.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultModelName       = "base"
	DefaultMaxBodyBytes    = 1 << 20
	DefaultMaxTokens       = 256
	DefaultMaxPromptTokens = 4096
	DefaultMaxConcurrent   = 64
)

// Server is the HTTP API over an engine.
type Server struct {
	eng      Engine
	opts     Options
	template *chattemplate.Template
	log      *slog.Logger
	metrics  *metrics
	slots    chan struct{} // one per generation request in flight
	handler  http.Handler
}

func errorf(format string, args ...any) error { return pkgerr.Errorf("openai", format, args...) }

// New makes a server over eng.
func New(eng Engine, opts Options) (*Server, error) {
	if opts.Tokenizer == nil {
		return nil, errorf("Options.Tokenizer is required")
	}
	for name, v := range map[string]int64{"MaxBodyBytes": opts.MaxBodyBytes, "MaxTokens": int64(opts.MaxTokens),
		"MaxPromptTokens": int64(opts.MaxPromptTokens), "MaxConcurrent": int64(opts.MaxConcurrent)} {
		if v < 0 {
			return nil, errorf("Options.%s must be 0 (the default) or more, got %d", name, v)
		}
	}
	setDefault(&opts.ModelName, DefaultModelName)
	setDefault(&opts.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&opts.MaxTokens, DefaultMaxTokens)
	setDefault(&opts.MaxPromptTokens, DefaultMaxPromptTokens)
	setDefault(&opts.MaxConcurrent, DefaultMaxConcurrent)
	s := &Server{eng: eng, opts: opts, log: opts.Logger, slots: make(chan struct{}, opts.MaxConcurrent)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.ChatTemplate != "" {
		t, err := chattemplate.Parse(opts.ChatTemplate)
		if err != nil {
			return nil, errorf("chat template: %w", err)
		}
		s.template = t
	}
	if opts.AdapterRoot != "" {
		root, err := filepath.EvalSymlinks(opts.AdapterRoot)
		if err != nil {
			return nil, errorf("adapter root: %w", err)
		}
		if s.opts.AdapterRoot, err = filepath.Abs(root); err != nil {
			return nil, errorf("adapter root: %w", err)
		}
	}
	s.metrics = newMetrics(s)
	s.handler = s.routes()
	return s, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers requests on ln until ctx is done, then shuts down: it
// stops accepting, waits up to grace for the requests in flight, cancels
// those still generating and returns nil once all have ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	genCtx, cancelGen := context.WithCancel(context.Background())
	defer cancelGen()
	hs := &http.Server{
		Handler:           s.handler,
		BaseContext:       func(net.Listener) context.Context { return genCtx },
		ReadHeaderTimeout: 30 * time.Second,
		ReadTimeout:       2 * time.Minute, // the request, body included; answers may stream for longer
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return errorf("%w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "grace", grace.String(), "in_flight", len(s.slots))
	graceCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := hs.Shutdown(graceCtx); err != nil {
		s.log.Warn("grace period over: cancelling the requests in flight", "in_flight", len(s.slots))
		cancelGen()
		endCtx, cancelEnd := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelEnd()
		if err := hs.Shutdown(endCtx); err != nil {
			hs.Close()
		}
	}
	<-served
	s.log.Info("stopped")
	return nil
}

// route is one endpoint.
type route struct {
	method     string
	handle     http.HandlerFunc
	admin      bool // load and unload: the admin key
	generation bool // takes a slot of MaxConcurrent
}

// answerErrors makes a handler of h, which returns the error to answer
// in place of writing it.
func answerErrors(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, err)
		}
	}
}

func (s *Server) routes() http.Handler {
	table := map[string]route{
		"/v1/completions":         {method: http.MethodPost, handle: answerErrors(s.handleCompletions), generation: true},
		"/v1/chat/completions":    {method: http.MethodPost, handle: answerErrors(s.handleChat), generation: true},
		"/v1/models":              {method: http.MethodGet, handle: s.handleModels},
		"/v1/load_lora_adapter":   {method: http.MethodPost, handle: answerErrors(s.handleLoad), admin: true},
		"/v1/unload_lora_adapter": {method: http.MethodPost, handle: answerErrors(s.handleUnload), admin: true},
		"/metrics":                {method: http.MethodGet, handle: s.metrics.handler().ServeHTTP},
		"/healthz":                {method: http.MethodGet, handle: s.handleHealth},
	}
	model := route{method: http.MethodGet, handle: answerErrors(s.handleModel)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := &requestInfo{start: time.Now()}
		rw := &statusWriter{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(p))
				if !rw.wrote {
					writeError(rw, &apiError{status: http.StatusInternalServerError, typ: "server_error", message: "internal error"})
				}
			}
			s.finish(r, rw, info)
		}()
		rt, ok := table[r.URL.Path]
		if !ok && strings.HasPrefix(r.URL.Path, "/v1/models/") {
			rt, ok = model, true
		}
		switch {
		case !ok:
			writeError(rw, &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "not_found", message: fmt.Sprintf("no endpoint %s", r.URL.Path)})
			return
		case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
			rw.Header().Set("Allow", rt.method)
			writeError(rw, &apiError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error", message: fmt.Sprintf("%s wants %s, not %s", r.URL.Path, rt.method, r.Method)})
			return
		}
		if err := s.authorize(r, rt.admin); err != nil {
			writeError(rw, err)
			return
		}
		if rt.generation {
			select {
			case s.slots <- struct{}{}:
				defer func() { <-s.slots }()
			default:
				s.metrics.rejected.WithLabelValues("concurrency").Inc()
				writeError(rw, &apiError{status: http.StatusTooManyRequests, typ: "rate_limit_error", code: "too_many_requests",
					message: fmt.Sprintf("too many requests in flight (the limit is %d): try again later", s.opts.MaxConcurrent)})
				return
			}
		}
		r.Body = http.MaxBytesReader(rw, r.Body, s.opts.MaxBodyBytes)
		rt.handle(rw, r)
	})
}

// requestInfo is what a handler records for the request's log line.
type requestInfo struct {
	start time.Time
	model string

	mu                       sync.Mutex // the choices of a request count from their goroutines
	promptTokens, completion int
}

// countTokens adds a finished generation's usage to the request's log line.
func countTokens(ctx context.Context, u serve.Usage) {
	if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		info.mu.Lock()
		info.promptTokens += u.PromptTokens
		info.completion += u.CompletionTokens
		info.mu.Unlock()
	}
}

type requestInfoKey struct{}

// setModel records the model a request named, for logs and metrics.
func setModel(r *http.Request, model string) {
	if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		info.model = model
	}
}

// finish logs a request and counts it.
func (s *Server) finish(r *http.Request, rw *statusWriter, info *requestInfo) {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	elapsed := time.Since(info.start)
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "duration_ms", float64(elapsed.Microseconds()) / 1000}
	if info.model != "" {
		attrs = append(attrs, "model", info.model)
	}
	info.mu.Lock()
	if info.promptTokens > 0 {
		attrs = append(attrs, "prompt_tokens", info.promptTokens, "completion_tokens", info.completion)
	}
	info.mu.Unlock()
	if err := r.Context().Err(); err != nil {
		attrs = append(attrs, "client", "gone")
	}
	s.log.Info("request", attrs...)
	s.metrics.requests.WithLabelValues(r.URL.Path, info.model, fmt.Sprint(status)).Inc()
	if info.model != "" {
		s.metrics.duration.WithLabelValues(info.model).Observe(elapsed.Seconds())
	}
}

// statusWriter records the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the writer beneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "models": len(s.eng.Adapters())})
}

// adapterFor returns the engine's name for a request's model: "" for the
// base; a 404 that lists the loaded models for one that is not.
func (s *Server) adapterFor(model string) (string, error) {
	if model == s.opts.ModelName {
		return "", nil
	}
	for _, a := range s.eng.Adapters() {
		if a.Name == model && !isBase(a) {
			return a.Name, nil
		}
	}
	return "", &apiError{status: http.StatusNotFound, typ: "invalid_request_error", param: "model", code: "model_not_found",
		message: fmt.Sprintf("model %q is not loaded; loaded: %s", model, strings.Join(s.modelIDs(), ", "))}
}

func isBase(a serve.AdapterInfo) bool { return a.Name == "" || a.Kind == serve.KindBase }

// modelIDs lists the base's and the adapters' names, base first.
func (s *Server) modelIDs() []string {
	ids := []string{s.opts.ModelName}
	for _, a := range s.eng.Adapters() {
		if !isBase(a) {
			ids = append(ids, a.Name)
		}
	}
	return ids
}

// encode tokenizes text for the field.
func (s *Server) encode(field, text string, addSpecial bool) ([]int64, error) {
	ids, err := s.opts.Tokenizer.Encode(text, addSpecial)
	if err != nil {
		return nil, badRequest(field, "%s: %v", field, err)
	}
	return ids, nil
}

// checkPrompt refuses an empty prompt and one over MaxPromptTokens.
func (s *Server) checkPrompt(field string, ids []int64) error {
	switch {
	case len(ids) == 0:
		return badRequest(field, "%s encodes to no tokens", field)
	case len(ids) > s.opts.MaxPromptTokens:
		return badRequest(field, "%s has %d tokens, over the server's limit of %d", field, len(ids), s.opts.MaxPromptTokens)
	}
	return nil
}

// nextSeed is the seed of a request that gives none.
func (s *Server) nextSeed() int64 { return mrand.Int64() }

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
