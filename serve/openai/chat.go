package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/peftonnx/peftonnx/serve/openai/chattemplate"
)

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	samplingFields
	Messages            []chatMessage `json:"messages"`
	MaxCompletionTokens *int          `json:"max_completion_tokens"`
	Logprobs            *bool         `json:"logprobs"`
	Tools               any           `json:"tools"`
	ToolChoice          any           `json:"tool_choice"`
	ResponseFormat      any           `json:"response_format"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    *string         `json:"name"`
}

type chatChoice struct {
	Index        int          `json:"index"`
	Message      *chatContent `json:"message,omitempty"`
	Delta        *chatContent `json:"delta,omitempty"`
	Logprobs     any          `json:"logprobs"`
	FinishReason *string      `json:"finish_reason"`
}

type chatContent struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type chatResponse = response[chatChoice]

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) error {
	var req chatRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.MaxCompletionTokens != nil {
		if req.MaxTokens != nil && *req.MaxTokens != *req.MaxCompletionTokens {
			return badRequest("max_completion_tokens", "max_tokens and max_completion_tokens differ; give one")
		}
		req.MaxTokens = req.MaxCompletionTokens
	}
	p, err := req.validate(s, s.opts.MaxTokens)
	if err != nil {
		return err
	}
	if err := firstRefused(
		refused{"logprobs", req.Logprobs != nil && *req.Logprobs, "logprobs is not supported"},
		refused{"tools", req.Tools != nil, "tools are not supported"},
		refused{"tool_choice", req.ToolChoice != nil, "tool_choice is not supported"},
		refused{"response_format", req.ResponseFormat != nil, "response_format is not supported"},
	); err != nil {
		return err
	}
	prompt, err := s.chatPrompt(req.Messages)
	if err != nil {
		return err
	}
	resp := newResponse[chatChoice](r, "chatcmpl-", "chat.completion", p.model)
	if !p.stream {
		outs, err := s.generateAll(r.Context(), p, [][]int64{prompt}, nil)
		if err != nil {
			return err
		}
		o := outs[0]
		resp.Choices = []chatChoice{{Message: &chatContent{Role: "assistant", Content: &o.text}, FinishReason: &o.finish}}
		resp.Usage = sumUsage(outs)
		writeJSON(w, http.StatusOK, resp)
		return nil
	}
	es := newEventStream(w)
	resp.Object = "chat.completion.chunk"
	chunk := func(delta chatContent, finish *string) chatResponse {
		return resp.withChoices(chatChoice{Delta: &delta, FinishReason: finish})
	}
	sentRole := false
	outs, err := s.generateAll(r.Context(), p, [][]int64{prompt}, func(_ int, piece string, finish *string) error {
		if !sentRole { // the role comes first, once something is to follow
			sentRole = true
			empty := ""
			if err := es.send(chunk(chatContent{Role: "assistant", Content: &empty}, nil)); err != nil {
				return err
			}
		}
		if finish != nil {
			return es.send(chunk(chatContent{}, finish))
		}
		return es.send(chunk(chatContent{Content: &piece}, nil))
	})
	es.end(outs, err, p.includeUsage, resp.usageChunk)
	return nil
}

// chatPrompt renders the messages with the chat template and encodes them.
func (s *Server) chatPrompt(msgs []chatMessage) ([]int64, error) {
	if s.template == nil {
		return nil, &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", param: "messages", code: "no_chat_template",
			message: "the model has no chat template (no chat_template in its tokenizer_config.json): start the server with --chat-template FILE, or use /v1/completions"}
	}
	if len(msgs) == 0 {
		return nil, badRequest("messages", "messages is required and must not be empty")
	}
	list := make([]any, len(msgs))
	for i, m := range msgs {
		field := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "user", "assistant", "developer", "tool":
		case "":
			return nil, badRequest(field+".role", "%s.role is required", field)
		default:
			return nil, badRequest(field+".role", "%s.role %q is not one of system, user, assistant, developer, tool", field, m.Role)
		}
		content, err := messageText(m.Content, field+".content")
		if err != nil {
			return nil, err
		}
		entry := map[string]any{"role": m.Role, "content": content}
		if m.Name != nil {
			entry["name"] = *m.Name
		}
		list[i] = entry
	}
	vars := map[string]any{
		"messages":              list,
		"add_generation_prompt": true,
		"bos_token":             s.specialToken(s.opts.Tokenizer.BOS()),
		"eos_token":             s.specialToken(s.opts.Tokenizer.EOS()),
	}
	text, err := s.template.Render(vars)
	var te *chattemplate.TemplateError
	if errors.As(err, &te) {
		return nil, badRequest("messages", "the chat template refuses these messages: %s", te.Message)
	}
	if err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, typ: "server_error", message: err.Error()}
	}
	// The template writes the special tokens itself, as HF's
	// apply_chat_template, which tokenizes without adding them.
	ids, err := s.encode("messages", text, false)
	if err != nil {
		return nil, err
	}
	return ids, s.checkPrompt("messages", ids)
}

func (s *Server) specialToken(id int64) string {
	if id < 0 {
		return ""
	}
	t, _ := s.opts.Tokenizer.Token(id)
	return t
}

// messageText reads a message's content: a string, or an array of parts
// of which only {"type": "text", "text": ...} are taken.
func messageText(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type *string `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest(field, "%s: want a string or an array of text parts, got %s", field, describeJSON(raw))
	}
	text := ""
	for i, p := range parts {
		if p.Type == nil || *p.Type != "text" || p.Text == nil {
			return "", badRequest(field, "%s[%d]: only parts {\"type\": \"text\", \"text\": ...} are supported", field, i)
		}
		text += *p.Text
	}
	return text, nil
}
