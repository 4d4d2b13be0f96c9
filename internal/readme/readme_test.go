package readme

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// goBlocks returns the ```go blocks of a Markdown text that are whole
// programs (they start with "package main").
func goBlocks(md string) []string {
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(md, -1) {
		if regexp.MustCompile(`^package main\n`).MatchString(m[1]) {
			blocks = append(blocks, m[1])
		}
	}
	return blocks
}

// TestREADMEExampleCompiles builds each Go program in README.md as a main
// package of this module, so that the example breaks the build of the
// test when the API it shows changes. The program is placed in the module
// through `go build -overlay`: nothing is written into the checkout.
func TestREADMEExampleCompiles(t *testing.T) {
	md, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlocks(string(md))
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go program (a ```go block starting with package main)")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH to build the example with: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for i, src := range blocks {
		tmp := t.TempDir()
		file := filepath.Join(tmp, "main.go")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		virtual := filepath.Join(root, "internal", "readme", "example", "main.go")
		overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{virtual: file}})
		overlayPath := filepath.Join(tmp, "overlay.json")
		if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(goCmd, "build", "-overlay", overlayPath, "-o", filepath.Join(tmp, "example"), "./internal/readme/example")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("README.md's Go program %d does not compile: %v\n%s", i+1, err, out)
		}
	}
}
