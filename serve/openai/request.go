package openai

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/serve"
)

// samplingFields are the request fields that completions and chat share.
type samplingFields struct {
	Model            *string         `json:"model"`
	MaxTokens        *int            `json:"max_tokens"`
	Temperature      *float64        `json:"temperature"`
	TopP             *float64        `json:"top_p"`
	TopK             *int            `json:"top_k"`
	Seed             *int64          `json:"seed"`
	Stop             json.RawMessage `json:"stop"`
	Stream           *bool           `json:"stream"`
	StreamOptions    *streamOptions  `json:"stream_options"`
	N                *int            `json:"n"`
	User             *string         `json:"user"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
}

type streamOptions struct {
	IncludeUsage *bool `json:"include_usage"`
}

// sampling is a request's validated generation settings.
type sampling struct {
	model        string
	adapter      string // the engine's name: "" for the base
	maxTokens    int
	temperature  float32
	topP         float32
	topK         int
	seed         int64
	stops        []string
	stream       bool
	includeUsage bool
}

// maxStops is how many stop strings a request may give (OpenAI allows 4).
const (
	maxStops       = 16
	maxStopLen     = 256
	maxTemperature = 2
)

// validate checks the shared fields and fills in the defaults;
// defaultMaxTokens is taken where max_tokens is not given.
func (f *samplingFields) validate(s *Server, defaultMaxTokens int) (sampling, error) {
	var p sampling
	if f.Model == nil || *f.Model == "" {
		return p, badRequest("model", "model is required: the base (%q) or a loaded adapter", s.opts.ModelName)
	}
	p.model = *f.Model
	adapter, err := s.adapterFor(p.model)
	if err != nil {
		return p, err
	}
	p.adapter = adapter
	p.maxTokens = defaultMaxTokens
	if f.MaxTokens != nil {
		p.maxTokens = *f.MaxTokens
		switch {
		case p.maxTokens < 1:
			return p, badRequest("max_tokens", "max_tokens must be at least 1, got %d", p.maxTokens)
		case p.maxTokens > s.opts.MaxTokens:
			return p, badRequest("max_tokens", "max_tokens %d is over the server's limit of %d", p.maxTokens, s.opts.MaxTokens)
		}
	}
	p.temperature, p.topP = 1, 1
	if t := f.Temperature; t != nil {
		if !(*t >= 0 && *t <= maxTemperature) {
			return p, badRequest("temperature", "temperature must be in [0, %d], got %v", maxTemperature, *t)
		}
		p.temperature = float32(*t)
	}
	if tp := f.TopP; tp != nil {
		if !(*tp > 0 && *tp <= 1) {
			return p, badRequest("top_p", "top_p must be in (0, 1], got %v", *tp)
		}
		p.topP = float32(*tp)
	}
	if k := f.TopK; k != nil {
		switch {
		case *k == -1 || *k == 0: // vLLM's -1 and 0 both mean all tokens
		case *k < -1:
			return p, badRequest("top_k", "top_k must be -1 (all), 0 (all) or positive, got %d", *k)
		default:
			p.topK = *k
		}
	}
	if f.Seed != nil {
		p.seed = *f.Seed
	} else {
		p.seed = s.nextSeed()
	}
	if p.stops, err = parseStop(f.Stop); err != nil {
		return p, err
	}
	p.stream = f.Stream != nil && *f.Stream
	if f.StreamOptions != nil {
		if !p.stream {
			return p, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = f.StreamOptions.IncludeUsage != nil && *f.StreamOptions.IncludeUsage
	}
	if f.N != nil && *f.N != 1 {
		return p, badRequest("n", "n must be 1, got %d: ask again for more choices", *f.N)
	}
	for name, v := range map[string]*float64{"presence_penalty": f.PresencePenalty, "frequency_penalty": f.FrequencyPenalty} {
		if v != nil && *v != 0 {
			return p, badRequest(name, "%s is not supported: give 0 or leave it out", name)
		}
	}
	return p, nil
}

// parseStop reads "stop": null, a string or an array of strings.
func parseStop(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	var stops []string
	if err := json.Unmarshal(raw, &one); err == nil {
		stops = []string{one}
	} else if err := json.Unmarshal(raw, &stops); err != nil {
		return nil, badRequest("stop", "stop: want a string or an array of strings, got %s", describeJSON(raw))
	}
	if len(stops) > maxStops {
		return nil, badRequest("stop", "stop: at most %d strings, got %d", maxStops, len(stops))
	}
	for i, s := range stops {
		if s == "" || len(s) > maxStopLen {
			return nil, badRequest("stop", "stop[%d]: want 1 to %d bytes, got %d", i, maxStopLen, len(s))
		}
	}
	return stops, nil
}

// describeJSON names the kind of a JSON value for messages.
func describeJSON(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "invalid JSON"
	}
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		if len(x) > 0 {
			return "an array of " + jsonValueKind(x[0]) + "s"
		}
		return "an empty array"
	}
	return "an object"
}

// engineRequest builds the engine's request for one prompt.
func (p sampling) engineRequest(prompt []int64) serve.Request {
	return serve.Request{
		Adapter:     p.adapter,
		Prompt:      prompt,
		MaxTokens:   p.maxTokens,
		Temperature: p.temperature,
		TopP:        p.topP,
		TopK:        p.topK,
		Seed:        p.seed,
	}
}

// tokenIDs reads an array of token ids, checked against the vocabulary.
func tokenIDs(raw []any, field string, vocab int) ([]int64, error) {
	ids := make([]int64, len(raw))
	for i, v := range raw {
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			return nil, &fieldError{field, fmt.Sprintf("element %d: want an integer token id, got %s", i, jsonValueKind(v))}
		}
		if f < 0 || (vocab > 0 && f >= float64(vocab)) {
			return nil, &fieldError{field, fmt.Sprintf("element %d: token id %v is outside the vocabulary of %d", i, f, vocab)}
		}
		ids[i] = int64(f)
	}
	return ids, nil
}

// refused is a request field that this server does not take: its name,
// whether the request set it, and the message that refuses it.
type refused struct {
	field   string
	set     bool
	message string
}

// firstRefused is the bad-request error of the first field in fields that
// the request set, or nil.
func firstRefused(fields ...refused) error {
	for _, f := range fields {
		if f.set {
			return badRequest(f.field, "%s", f.message)
		}
	}
	return nil
}
