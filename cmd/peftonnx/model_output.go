package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// modelOutputNote is the paragraph of a command's help on how it writes
// OUT, a model made from MODEL.
const modelOutputNote = `OUT keeps its data in an external file (OUT.data) when MODEL does or when
it passes 2 GiB. It is written to a temporary file and renamed, and MODEL is
never changed.`

// editedModel is a model that a command reads from one file, changes and
// saves to another, OUT (-o): inject, prefix, apply, merge and quantize.
type editedModel struct {
	m   *graph.Model
	out string
	// external says that the input keeps its data in an external file;
	// OUT then does too.
	external bool
}

// loadForEdit loads the model at path, to be saved changed to out. It
// refuses an out that would overwrite one of the model's files or one of
// others (checkOutput).
func loadForEdit(path, out string, others ...string) (*editedModel, error) {
	m, err := graph.Load(path)
	if err != nil {
		return nil, err
	}
	if err := checkOutput(out, m, others...); err != nil {
		m.Close()
		return nil, err
	}
	return &editedModel{m: m, out: out, external: hasExternalData(m)}, nil
}

// parseForEdit parses the command line of a command that changes the one
// model it names (what, in the usage error: parseOne, which also wants
// -o OUT and the flags in required) with the adapter at adapterPath, and
// loads that model to be saved to out (loadForEdit). It returns the
// model's path too, for messages.
func (cx *context) parseForEdit(args []string, what string, out, adapterPath *string, required ...string) (string, *editedModel, error) {
	model, err := cx.parseOne(args, what, append([]string{"-o OUT"}, required...)...)
	if err != nil {
		return "", nil, err
	}
	e, err := loadForEdit(model, *out, *adapterPath)
	return model, e, err
}

// save writes the changed model to OUT (saveModel).
func (e *editedModel) save() error { return saveModel(e.m, e.out, e.external) }

// remove takes back what save wrote, when the command fails after it.
func (e *editedModel) remove() {
	os.Remove(e.out)
	if e.external {
		os.Remove(e.out + ".data")
	}
}

// Close releases the model.
func (e *editedModel) Close() error { return e.m.Close() }

// hasExternalData reports whether any initializer of m keeps its data in
// an external file.
func hasExternalData(m *graph.Model) bool {
	for _, t := range m.Graph().Initializer {
		if t.DataLocation == onnxpb.TensorProto_EXTERNAL {
			return true
		}
	}
	return false
}

// inputFiles lists the files that m was read from: the model and its
// external data files.
func inputFiles(m *graph.Model) []string {
	var files []string
	if m.Path != "" {
		files = append(files, m.Path)
	}
	seen := map[string]bool{}
	for _, t := range m.Graph().Initializer {
		if t.DataLocation != onnxpb.TensorProto_EXTERNAL {
			continue
		}
		for _, e := range t.ExternalData {
			if e.Key == "location" && !seen[e.Value] {
				seen[e.Value] = true
				files = append(files, filepath.Join(m.Dir, e.Value))
			}
		}
	}
	return files
}

// checkOutput refuses an output model path that is a directory, or that
// would replace (itself or through its data file OUT.data) one of the
// files m was read from or one of others. Input files are never changed.
func checkOutput(out string, m *graph.Model, others ...string) error {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("output %s is a directory; want a model file name such as %s", out, filepath.Join(out, "model.onnx"))
	}
	if strings.HasSuffix(out, string(filepath.Separator)) || strings.HasSuffix(out, "/") {
		return fmt.Errorf("output %s names a folder (it ends in a slash); want a model file name such as %s", out, filepath.Join(out, "model.onnx"))
	}
	inputs := append(inputFiles(m), others...)
	for _, target := range []string{out, out + ".data"} {
		st, err := os.Stat(target)
		if err != nil {
			continue
		}
		for _, in := range inputs {
			if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
				return fmt.Errorf("output %s would overwrite the input %s: choose another -o", out, in)
			}
		}
	}
	return nil
}

// saveModel writes m to out atomically, with its tensors in out.data when
// external is set (or when it passes 2 GiB). It creates out's folder if
// needed, and removes what it created when the save fails.
func saveModel(m *graph.Model, out string, external bool) error {
	dir := filepath.Dir(out)
	created, err := makeDirs(dir)
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if err := m.Save(out, graph.SaveOptions{ExternalData: external}); err != nil {
		removeCreated(dir, created)
		return err
	}
	return nil
}

// makeDirs creates dir and its missing parents, and returns the topmost
// folder it created ("" when dir was there).
func makeDirs(dir string) (created string, err error) {
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	created = dir
	for p := filepath.Dir(created); p != created; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		created = p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return created, nil
}

// removeCreated removes dir and its parents up to created, the folder
// makeDirs returned; os.Remove leaves any that something has put files
// in since.
func removeCreated(dir, created string) {
	for p := dir; created != ""; p = filepath.Dir(p) {
		if os.Remove(p) != nil || p == created {
			break
		}
	}
}
