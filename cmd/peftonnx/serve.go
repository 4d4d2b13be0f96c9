package main

import (
	gocontext "context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peftonnx/peftonnx/serve"
	"github.com/peftonnx/peftonnx/serve/openai"
	"github.com/peftonnx/peftonnx/tokenizer"
)

func init() {
	register(&command{
		name: "serve",
		args: "MODEL [--tokenizer tokenizer.json] [--adapter NAME=PATH]... [--addr 127.0.0.1:8080] " +
			"[--max-loras N] [--max-cpu-loras N] [--dora] [--adapter-root DIR] [--api-key K] [--admin-key K] [--chat-template FILE]",
		summary: "serve a base model and its adapters over an OpenAI-compatible HTTP API",
		detail: `
The base model is loaded once; each --adapter (a HuggingFace PEFT folder,
an .onnx_adapter file, a PaddleNLP folder or a prefix adapter) is loaded
under its NAME, and requests choose one by their "model" field (the base
is --model-name). Requests for different adapters are batched together.
--target and --modules limit the layers that adapters may change (an adapter on
another layer is refused), which makes each decoding step cheaper.
DoRA adapters (use_dora) need --dora, which makes every step dearer (the
gain of each output feature is applied per request row), with or without
DoRA adapters loaded; without it they are refused.

Endpoints: POST /v1/completions, POST /v1/chat/completions (the chat
template of the tokenizer_config.json beside the tokenizer, or
--chat-template), GET /v1/models, POST /v1/load_lora_adapter and
/v1/unload_lora_adapter (vLLM's bodies; lora_path must lie under
--adapter-root, and without it loading over HTTP is off), GET /metrics
(Prometheus) and GET /healthz.

--api-key (or $PEFTONNX_API_KEY) is wanted as "Authorization: Bearer KEY"
on every endpoint; --admin-key (or $PEFTONNX_ADMIN_KEY) on load and unload.
The server writes "listening on http://ADDR" to standard output once it
accepts connections, and structured logs to standard error. SIGTERM or
SIGINT stop it: requests in flight get --shutdown-grace to finish, the
rest are cancelled, and it exits 0.`,
		run: runServe,
	})
}

// adapterFlags collects --adapter NAME=PATH.
type adapterFlags []string

func (a *adapterFlags) String() string { return strings.Join(*a, ",") }

func (a *adapterFlags) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=PATH, got %q", v)
	}
	*a = append(*a, v)
	return nil
}

func runServe(cx *context, args []string) error {
	fs := cx.flags()
	tokPath := fs.String("tokenizer", "", "HuggingFace `tokenizer.json`; default: the one beside MODEL")
	var adapters adapterFlags
	fs.Var(&adapters, "adapter", "load the adapter at PATH as model `NAME=PATH` (repeatable)")
	addr := fs.String("addr", "127.0.0.1:8080", "listen on `HOST:PORT` (port 0 picks a free one)")
	modelName := fs.String("model-name", "", "the `NAME` requests give for the base model; default: MODEL's folder or file name")
	targets := addTargetFlags(fs, "let adapters change only")
	maxLoRAs := fs.Int("max-loras", 0, "at most `N` different adapters in one batch (default 8)")
	maxCPULoRAs := fs.Int("max-cpu-loras", 0, "keep at most `N` LoRA adapters in memory, dropping the least recently used (default 64)")
	maxBatch := fs.Int("max-batch", 0, "run at most `N` sequences in one decoding step (default 8)")
	maxQueue := fs.Int("max-queue", 0, "let at most `N` requests wait for a batch row (default 64)")
	maxTokens := fs.Int("max-tokens", openai.DefaultMaxTokens, "the largest max_tokens a request may ask for, `N`")
	maxPrompt := fs.Int("max-prompt-tokens", openai.DefaultMaxPromptTokens, "the longest prompt in tokens, `N`")
	maxConcurrent := fs.Int("max-concurrent", openai.DefaultMaxConcurrent, "answer 429 beyond `N` generation requests in flight")
	maxBody := fs.Int64("max-body-bytes", openai.DefaultMaxBodyBytes, "the largest request body, `BYTES`")
	adapterRoot := fs.String("adapter-root", "", "the `DIR` under which /v1/load_lora_adapter may load; unset: loading over HTTP is off")
	apiKey := fs.String("api-key", "", "want `KEY` as a Bearer token on every endpoint; default $PEFTONNX_API_KEY")
	adminKey := fs.String("admin-key", "", "want `KEY` as a Bearer token on load and unload; default $PEFTONNX_ADMIN_KEY")
	templatePath := fs.String("chat-template", "", "the chat template, a Jinja `FILE`; default: tokenizer_config.json's chat_template")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "on SIGTERM, let requests in flight finish for `DURATION`")
	dora := fs.Bool("dora", false, "take DoRA adapters (use_dora) too, at a cost on every decoding step")
	threads := fs.Int("threads", 0, "intra-op threads, `N`; 0 lets ONNX Runtime choose")
	logFormat := fs.String("log-format", "text", "logs to standard error as `text` or json")
	model, err := cx.parseOne(args, "MODEL")
	if err != nil {
		return err
	}
	switch {
	case *logFormat != "text" && *logFormat != "json":
		return cx.usagef("--log-format must be text or json, got %q", *logFormat)
	case *grace < 0:
		return cx.usagef("--shutdown-grace must be 0 or more, got %s", *grace)
	}
	for name, v := range map[string]int{"max-loras": *maxLoRAs, "max-cpu-loras": *maxCPULoRAs, "max-batch": *maxBatch,
		"max-queue": *maxQueue, "threads": *threads} {
		if v < 0 {
			return cx.usagef("--%s must be 0 (the default) or more, got %d", name, v)
		}
	}
	for name, v := range map[string]int64{"max-tokens": int64(*maxTokens), "max-prompt-tokens": int64(*maxPrompt),
		"max-concurrent": int64(*maxConcurrent), "max-body-bytes": *maxBody} {
		if v <= 0 {
			return cx.usagef("--%s must be positive, got %d", name, v)
		}
	}
	// The keys' defaults are read here, not given to the flags, so that -h
	// does not print them.
	setFromEnv(apiKey, "PEFTONNX_API_KEY")
	setFromEnv(adminKey, "PEFTONNX_ADMIN_KEY")
	if *tokPath == "" {
		*tokPath = filepath.Join(filepath.Dir(model), "tokenizer.json")
	}
	if *modelName == "" {
		*modelName = defaultModelName(model)
	}
	var logger *slog.Logger
	if *logFormat == "json" {
		logger = slog.New(slog.NewJSONHandler(cx.stderr, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(cx.stderr, nil))
	}

	tok, err := tokenizer.Load(*tokPath)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	var template string
	if *templatePath != "" {
		b, err := os.ReadFile(*templatePath)
		if err != nil {
			return fmt.Errorf("serve: --chat-template: %w", err)
		}
		template = string(b)
	} else if template, err = openai.ChatTemplateFromConfig(filepath.Join(filepath.Dir(*tokPath), "tokenizer_config.json")); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	eopts := serve.Options{MaxLoRAs: *maxLoRAs, MaxCPULoRAs: *maxCPULoRAs, MaxBatch: *maxBatch, MaxQueue: *maxQueue,
		MaxTokens: *maxTokens, DoRA: *dora, Threads: *threads, Logger: logger}
	if t := targets.patterns(); len(t) > 0 {
		eopts.Targets = t
	}
	if eos := tok.EOS(); eos >= 0 {
		eopts.EOS = []int64{eos}
	}
	eng, err := serve.New(model, eopts)
	if err != nil {
		return err
	}
	defer eng.Close()
	for _, a := range adapters {
		name, path, _ := strings.Cut(a, "=")
		if _, err := eng.Load(name, path, false); err != nil {
			return fmt.Errorf("serve: --adapter %s: %w", a, err)
		}
	}
	srv, err := openai.New(eng, openai.Options{Tokenizer: tok, ChatTemplate: template, ModelName: *modelName,
		APIKey: *apiKey, AdminKey: *adminKey, AdapterRoot: *adapterRoot, MaxBodyBytes: *maxBody,
		MaxTokens: *maxTokens, MaxPromptTokens: *maxPrompt, MaxConcurrent: *maxConcurrent, Logger: logger})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ctx, stop := signal.NotifyContext(gocontext.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("serving", "model", model, "name", *modelName, "adapters", len(adapters), "chat_template", template != "", "addr", ln.Addr().String())
	fmt.Fprintf(cx.stdout, "listening on http://%s\n", ln.Addr())
	return srv.Serve(ctx, ln, *grace)
}

func setFromEnv(v *string, env string) {
	if *v == "" {
		*v = os.Getenv(env)
	}
}

// defaultModelName names the base after its folder, or for a model.onnx
// in the working folder, after its file.
func defaultModelName(model string) string {
	abs, err := filepath.Abs(model)
	if err != nil {
		abs = model
	}
	base := filepath.Base(abs)
	if dir := filepath.Base(filepath.Dir(abs)); strings.EqualFold(base, "model.onnx") && dir != "." && dir != string(filepath.Separator) {
		return dir
	}
	return strings.TrimSuffix(base, filepath.Ext(base))
}
