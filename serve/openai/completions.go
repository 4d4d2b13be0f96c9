package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	samplingFields
	Prompt   json.RawMessage `json:"prompt"`
	Echo     *bool           `json:"echo"`
	Logprobs *int            `json:"logprobs"`
	Suffix   *string         `json:"suffix"`
	BestOf   *int            `json:"best_of"`
}

type completionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type completionResponse = response[completionChoice]

// defaultCompletionTokens is OpenAI's max_tokens default for completions.
const defaultCompletionTokens = 16

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) error {
	var req completionRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	p, err := req.validate(s, min(defaultCompletionTokens, s.opts.MaxTokens))
	if err != nil {
		return err
	}
	if err := firstRefused(
		refused{"echo", req.Echo != nil && *req.Echo, "echo is not supported"},
		refused{"logprobs", req.Logprobs != nil, "logprobs is not supported"},
		refused{"suffix", req.Suffix != nil && *req.Suffix != "", "suffix is not supported"},
		refused{"best_of", req.BestOf != nil && *req.BestOf != 1, "best_of must be 1"},
	); err != nil {
		return err
	}
	prompts, err := s.completionPrompts(req.Prompt)
	if err != nil {
		return err
	}
	resp := newResponse[completionChoice](r, "cmpl-", "text_completion", p.model)
	if p.stream {
		es := newEventStream(w)
		outs, err := s.generateAll(r.Context(), p, prompts, func(i int, piece string, finish *string) error {
			return es.send(resp.withChoices(completionChoice{Index: i, Text: piece, FinishReason: finish}))
		})
		es.end(outs, err, p.includeUsage, resp.usageChunk)
		return nil
	}
	outs, err := s.generateAll(r.Context(), p, prompts, nil)
	if err != nil {
		return err
	}
	for i, o := range outs {
		resp.Choices = append(resp.Choices, completionChoice{Index: i, Text: o.text, FinishReason: &o.finish})
	}
	resp.Usage = sumUsage(outs)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// completionPrompts reads "prompt": a string, an array of strings, an
// array of token ids or an array of such arrays; each is one choice.
func (s *Server) completionPrompts(raw json.RawMessage) ([][]int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("prompt", "prompt is required")
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, badRequest("prompt", "prompt: %v", err)
	}
	var prompts [][]int64
	vocab := s.opts.Tokenizer.VocabSize()
	bad := badRequest("prompt", "prompt: want a string, an array of strings, an array of token ids or an array of arrays of token ids, got %s", describeJSON(raw))
	switch x := v.(type) {
	case string:
		ids, err := s.encode("prompt", x, true)
		if err != nil {
			return nil, err
		}
		prompts = append(prompts, ids)
	case []any:
		if len(x) == 0 {
			return nil, badRequest("prompt", "prompt is an empty array")
		}
		switch x[0].(type) {
		case float64:
			ids, err := tokenIDs(x, "prompt", vocab)
			if err != nil {
				return nil, jsonError(err, nil, nil)
			}
			prompts = append(prompts, ids)
		case string, []any:
			if len(x) > s.opts.MaxConcurrent {
				return nil, badRequest("prompt", "prompt: at most %d prompts in one request, got %d", s.opts.MaxConcurrent, len(x))
			}
			for i, e := range x {
				field := fmt.Sprintf("prompt[%d]", i)
				var ids []int64
				var err error
				switch y := e.(type) {
				case string:
					ids, err = s.encode(field, y, true)
				case []any:
					ids, err = tokenIDs(y, field, vocab)
					if err != nil {
						err = jsonError(err, nil, nil)
					}
				default:
					return nil, bad
				}
				if err != nil {
					return nil, err
				}
				prompts = append(prompts, ids)
			}
		default:
			return nil, bad
		}
	default:
		return nil, bad
	}
	for i, ids := range prompts {
		if err := s.checkPrompt(fieldOf("prompt", i, len(prompts)), ids); err != nil {
			return nil, err
		}
	}
	return prompts, nil
}

func fieldOf(name string, i, n int) string {
	if n == 1 {
		return name
	}
	return fmt.Sprintf("%s[%d]", name, i)
}

// generateAll runs the prompts together, each a choice. With onPiece
// (streaming) it is called with every piece of text of choice i, and with
// the finish reason at the end of each.
func (s *Server) generateAll(ctx context.Context, p sampling, prompts [][]int64, onPiece func(i int, piece string, finish *string) error) ([]outcome, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outs := make([]outcome, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, prompt := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pi := p
			pi.seed = p.seed + int64(i)
			onText := func(piece string) error {
				if onPiece == nil {
					return nil
				}
				return onPiece(i, piece, nil)
			}
			out, err := s.generate(ctx, pi, prompt, onText)
			if err == nil && onPiece != nil {
				err = onPiece(i, "", &out.finish)
			}
			if err != nil {
				cancel() // one failed: the others stop too
			}
			outs[i], errs[i] = out, err
		}()
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, context.Canceled) {
			return outs, err // the cause, not the others that it stopped
		}
		if first == nil {
			first = err
		}
	}
	return outs, first
}
