package openai

import (
	"context"
	"errors"
	"time"

	"github.com/peftonnx/peftonnx/serve"
)

// errStopString ends a generation whose text reached a stop string.
var errStopString = errors.New("stop string reached")

// outcome is how one prompt's generation ended.
type outcome struct {
	text   string // all of it, as the pieces given to onText
	finish string // "stop" or "length"
	usage  serve.Usage
}

// generate runs one prompt on the engine and calls onText with each piece
// of text as it becomes final. An error of onText (the client went away)
// ends the generation.
func (s *Server) generate(ctx context.Context, p sampling, prompt []int64, onText func(string) error) (outcome, error) {
	var out outcome
	asm, err := newTextAssembler(s.opts.Tokenizer, prompt, p.stops)
	if err != nil {
		return out, err
	}
	give := func(piece string) error {
		if piece == "" {
			return nil
		}
		out.text += piece
		return onText(piece)
	}
	// The engine's events go through a queue, so that its goroutine never
	// waits for this request's client (Engine.Generate's emit must return
	// quickly); this goroutine decodes and writes them.
	q := newEventQueue()
	type result struct {
		usage serve.Usage
		err   error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		u, err := s.eng.Generate(ctx, p.engineRequest(prompt), q.push)
		q.close()
		done <- result{u, err}
	}()
	last := start
	tokens := 0
	var readErr error // of the assembler or of onText (the client went away)
	take := func(ev timedEvent) error {
		if ev.Done {
			out.finish = ev.FinishReason
			return nil
		}
		if tokens == 0 {
			s.metrics.firstToken.WithLabelValues(p.model).Observe(ev.at.Sub(start).Seconds())
		} else {
			s.metrics.interToken.WithLabelValues(p.model).Observe(ev.at.Sub(last).Seconds())
		}
		last = ev.at
		tokens++
		piece, _, err := asm.add(ev.Token)
		if err != nil {
			return err
		}
		return give(piece)
	}
	for readErr == nil && !asm.stopped {
		evs, ok := q.pop()
		if !ok {
			break
		}
		for _, ev := range evs {
			if readErr = take(ev); readErr != nil || asm.stopped {
				break
			}
		}
	}
	switch {
	case readErr != nil:
		q.stop(readErr)
	case asm.stopped:
		q.stop(errStopString) // the engine ends the sequence at its next token
	}
	r := <-done
	usage, err := r.usage, r.err
	switch {
	case readErr != nil:
		return out, readErr
	case asm.stopped && (err == nil || errors.Is(err, errStopString)):
		out.finish, usage = serve.FinishStop, serve.Usage{PromptTokens: len(prompt), CompletionTokens: tokens}
	case err != nil:
		return out, err
	default:
		rest, err := asm.finish()
		if err != nil {
			return out, err
		}
		if err := give(rest); err != nil {
			return out, err
		}
	}
	if out.finish == "" {
		out.finish = serve.FinishLength
	}
	out.usage = usage
	countTokens(ctx, usage)
	s.metrics.promptTokens.WithLabelValues(p.model).Add(float64(usage.PromptTokens))
	s.metrics.completionTokens.WithLabelValues(p.model).Add(float64(usage.CompletionTokens))
	return out, nil
}

// usageJSON is the "usage" object of a response.
type usageJSON struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func sumUsage(outs []outcome) *usageJSON {
	u := &usageJSON{}
	for _, o := range outs {
		u.PromptTokens += o.usage.PromptTokens
		u.CompletionTokens += o.usage.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}
