package adapter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigOfAnotherSave: the config of one save beside the weights of
// another (a kill between SaveDir's two renames, or two saves at once) is
// refused, where an alpha-64 config beside alpha-16 weights used to load.
// Issue 16 D2. A config edited by hand still loads.
func TestConfigOfAnotherSave(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	a := sampleLoRA()
	if err := SaveDir(dir, a); err != nil {
		t.Fatal(err)
	}
	b := sampleLoRA() // another training: other weights, other alpha
	b.LoRA.Alpha = 64
	for _, w := range b.Weights {
		w.B.Data[0] += 1
	}
	if err := SaveDir(other, b); err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(other, HFConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, HFConfigFile), config, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadDir(dir)
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "is not the weights file saved with this config") || fe.File != filepath.Join(dir, HFConfigFile) {
		t.Fatalf("a config of another save: got %v, want a FormatError naming %s", err, HFConfigFile)
	}
	// Its own pair loads, also after an edit by hand.
	edited := strings.Replace(string(config), `"lora_alpha": 64`, `"lora_alpha": 32`, 1)
	if edited == string(config) {
		t.Fatal("the config has no lora_alpha 64 to edit")
	}
	if err := os.WriteFile(filepath.Join(other, HFConfigFile), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(other)
	if err != nil {
		t.Fatalf("the matching pair, edited: %v", err)
	}
	if got.LoRA.Alpha != 32 {
		t.Errorf("edited alpha: got %v, want 32", got.LoRA.Alpha)
	}
}

// TestPaddleConfigOfAnotherSave: the same check for PaddleNLP's layout,
// lora_config.json beside lora_model_state.pdparams.
func TestPaddleConfigOfAnotherSave(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	a := sampleLoRA()
	delete(a.Extra, "lm_head.weight") // not in PaddleNLP's layout
	if err := SavePaddleDir(dir, a); err != nil {
		t.Fatal(err)
	}
	b := sampleLoRA()
	delete(b.Extra, "lm_head.weight")
	b.LoRA.Alpha = 64
	for _, w := range b.Weights {
		w.B.Data[0] += 1
	}
	if err := SavePaddleDir(other, b); err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(other, PaddleLoRAConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, PaddleLoRAConfigFile), config, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "is not the weights file saved with this config") {
		t.Fatalf("a PaddleNLP config of another save: got %v, want a refusal", err)
	}
	if _, err := LoadDir(other); err != nil {
		t.Errorf("the matching pair: %v", err)
	}
}
