package openai

import (
	"net/http"
	"time"
)

// response is the body of a completions or chat reply, and of each chunk
// of its stream; C is the endpoint's choice type.
type response[C any] struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []C        `json:"choices"`
	Usage   *usageJSON `json:"usage,omitempty"`
}

// newResponse starts the reply to r, an object of type object from model,
// with a fresh id that begins with idPrefix, and names model in r's log
// line.
func newResponse[C any](r *http.Request, idPrefix, object, model string) response[C] {
	setModel(r, model)
	return response[C]{ID: newID(idPrefix), Object: object, Created: time.Now().Unix(), Model: model}
}

// withChoices returns a copy of resp (a chunk of its stream) that holds
// choices.
func (resp response[C]) withChoices(choices ...C) response[C] {
	resp.Choices = choices
	return resp
}

// usageChunk returns the chunk that ends a stream with the usage, u, and
// no choices.
func (resp response[C]) usageChunk(u *usageJSON) any {
	resp.Choices, resp.Usage = []C{}, u
	return resp
}
