package openai

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
)

// ChatTemplateFromConfig returns the chat template of a
// tokenizer_config.json: its chat_template string, or of a list of named
// templates the one named "default". A file that does not exist, or has
// no chat_template, gives "".
func ChatTemplateFromConfig(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", errorf("%w", err)
	}
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", errorf("%s: %w", path, err)
	}
	if len(cfg.ChatTemplate) == 0 || string(cfg.ChatTemplate) == "null" {
		return "", nil
	}
	var one string
	if json.Unmarshal(cfg.ChatTemplate, &one) == nil {
		return one, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(cfg.ChatTemplate, &named); err != nil {
		return "", errorf("%s: chat_template is neither a string nor a list of {name, template}", path)
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", errorf("%s: chat_template lists no template named \"default\"", path)
}
