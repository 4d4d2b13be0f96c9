package serve

import (
	"errors"
	"log/slog"
	"time"
)

// This file is the engine's API, the contract that the HTTP layer
// (serve/openai) builds on. What it lists stays; additions are marked.
//
// Additions to the first contract (nothing it listed changed):
// Options.MaxJoin, MaxSeqLen, EOS, Targets and DoRA; AdapterInfo.Targets; the fields of
// Stats; the Kind and Finish constants; ErrInvalidRequest,
// ErrAdapterExists and ErrClosed. One change of behaviour, not of
// signature: Generate calls emit from a goroutine of the request's own,
// not the engine's, so that a slow client holds up only itself.

// Options configure an Engine. Zero values take the defaults below.
type Options struct {
	// MaxLoRAs is how many distinct adapters one decoding batch may hold
	// (the stacked table has MaxLoRAs+1 slots, slot 0 the base); a request
	// for another adapter waits for a slot. Default 8.
	MaxLoRAs int
	// MaxCPULoRAs is how many LoRA adapters stay resident in memory; the
	// least recently used beyond it are evicted and read again from their
	// path when a request names them. Default 64.
	MaxCPULoRAs int
	// MaxBatch is how many sequences one decoding step runs together:
	// more gives more tokens/s in all and a slower token to each.
	// Default 8; 1 on a model without position_ids or attention_mask
	// (see the package doc).
	MaxBatch int
	// MaxJoin is how many queued requests may join the batch at one step
	// boundary; 0 lets in as many as there are free rows. Their prompts
	// are prefilled before the step, so the rows already decoding wait
	// for that: a small MaxJoin keeps their tokens steady, a large one
	// fills the batch sooner. (Addition.)
	MaxJoin int
	// MaxQueue is how many requests may wait for a batch row; Generate
	// returns ErrQueueFull beyond it. Default 64.
	MaxQueue int
	// MaxTokens caps Request.MaxTokens (ErrTooLong above it) and is the
	// default where a request gives 0. Default 256.
	MaxTokens int
	// MaxSeqLen caps prompt plus MaxTokens (ErrTooLong above it); 0 means
	// no cap beyond MaxTokens. (Addition.)
	MaxSeqLen int
	// EOS lists token ids that end a sequence (finish reason "stop"),
	// such as the tokenizer's end-of-text; the EOS token is emitted.
	// (Addition.)
	EOS []int64
	// Targets selects the linear layers that adapters may change, as
	// target_modules regexes (".*_proj"); nil takes every linear layer.
	// Each stacked layer costs a few small nodes per step, with or without
	// an adapter on it, so naming the targets makes steps faster; an
	// adapter on another layer is refused (ErrAdapterMismatch).
	// (Addition.)
	Targets []string
	// DoRA builds the base to take DoRA adapters (HF PEFT's use_dora)
	// beside plain LoRA ones (rewrite.StackDoRA): every stacked layer
	// also rescales each output feature by its row's adapter's gain
	// m/‖W + s·A·B‖, computed when the adapter is read, from the stacked
	// layers' weights where the base model holds them: in its external
	// data file, mapped for the engine's life, not copied (a model with
	// its weights inline keeps those layers' bytes). It costs time on every
	// step, with or without DoRA adapters loaded; without it a DoRA
	// adapter is refused (ErrAdapterMismatch). (Addition.)
	DoRA bool
	// Threads is ONNX Runtime's intra-op threads; 0 leaves its default.
	Threads int
	// Logger receives the engine's structured logs; nil discards them.
	Logger *slog.Logger
}

// Adapter kinds in AdapterInfo.Kind.
const (
	KindBase   = "base"
	KindLoRA   = "lora"
	KindPrefix = "prefix"
)

// AdapterInfo describes the base or one loaded adapter.
type AdapterInfo struct {
	Name string
	Kind string // KindBase, KindLoRA or KindPrefix
	Path string // the file or folder it was loaded from
	// Hash is the hex sha256 of the adapter's config and tensors (names,
	// shapes, element types and data, in name order); for the base, of
	// the model file. A reload under the same name changes it when the
	// content changed.
	Hash string
	// Rank is the LoRA rank r (the largest, where modules differ), or for
	// a prefix adapter its number of virtual tokens.
	Rank     int
	Bytes    int64 // the adapter's tensor bytes in memory (0 while evicted)
	Resident bool  // in memory now; false once evicted (reloaded on demand)
	LoadedAt time.Time
	// Targets names the modules a LoRA adapter changes. (Addition.)
	Targets []string
}

// Request is one generation request.
type Request struct {
	Adapter   string  // the adapter's name; "" is the base
	Prompt    []int64 // token ids, not empty
	MaxTokens int     // 0 takes Options.MaxTokens
	// Temperature 0 is greedy; otherwise tokens are sampled with TopK
	// (0 = all) and TopP (0 or 1 = all), from a source seeded by Seed.
	Temperature, TopP float32
	TopK              int
	Seed              int64
	// Stop ends the sequence when its generated tokens end with one of
	// these token sequences (the stop tokens are emitted: the HTTP layer
	// trims them); a token of Options.EOS does too.
	Stop [][]int64
}

// Event is one generated token, or with Done the end of the sequence.
type Event struct {
	Token        int64
	Done         bool
	FinishReason string // "stop" | "length", on the Done event
}

// Finish reasons.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens, CompletionTokens int
}

// Stats is a snapshot of the engine's counters, for /metrics.
type Stats struct {
	Adapters map[string]AdapterStats // by name; "" is the base
	// Steps counts decoding steps, BatchRows the rows they ran (so
	// BatchRows/Steps is the mean batch size); StepSeconds their time.
	Steps, BatchRows int64
	StepSeconds      float64
	// BatchSizes[n] counts the steps that ran n rows.
	BatchSizes []int64
	Queued     int // requests waiting for a row now
	Active     int // sequences in the batch now
	Resident   int // LoRA adapters in memory now
	Evicted    int64
	Reloaded   int64 // evicted adapters read again on demand
}

// AdapterStats counts one adapter's traffic.
type AdapterStats struct {
	Requests, PromptTokens, CompletionTokens int64
	QueueSeconds                             float64 // summed wait for a batch row
}

// Errors that the HTTP layer maps to status codes. The engine's errors
// wrap them with detail; test with errors.Is.
var (
	// ErrUnknownAdapter: a request or Unload names an adapter that is not
	// loaded; the message lists those that are (404).
	ErrUnknownAdapter = errors.New("unknown adapter")
	// ErrAdapterMismatch: an adapter does not fit the base model (modules,
	// shapes, kind); the message says what does not fit (400).
	ErrAdapterMismatch = errors.New("adapter does not fit the base model")
	// ErrQueueFull: MaxQueue requests already wait (429).
	ErrQueueFull = errors.New("queue full")
	// ErrTooLong: MaxTokens or the prompt is over the engine's limits (400).
	ErrTooLong = errors.New("request too long")
	// ErrInvalidRequest: the request itself is wrong: an empty prompt, a
	// token outside the vocabulary, sampling settings out of range (400).
	// (Addition.)
	ErrInvalidRequest = errors.New("invalid request")
	// ErrAdapterExists: Load without replace names a loaded adapter
	// (409). (Addition.)
	ErrAdapterExists = errors.New("adapter already loaded")
	// ErrClosed: the engine is closed (503). (Addition.)
	ErrClosed = errors.New("engine closed")
)
