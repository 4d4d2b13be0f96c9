package main

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/peftonnx/peftonnx/dtype"
	roles "github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/internal/atomicfile"
	"github.com/peftonnx/peftonnx/npy"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

func init() {
	register(&command{
		name:    "run",
		args:    "MODEL --input NAME=FILE.npy... [--defaults] [--adapter DIR|FILE] --output-dir DIR [--threads N] [--device cpu|cuda]",
		summary: "run a model once on .npy inputs and write its outputs as .npy files",
		detail: `
Each --input feeds the model input NAME from a NumPy .npy file (C order,
little-endian; float16/32/64, int8/16/32/64, uint8/16/32/64 or bool). Its
element type must be the input's, and its shape must fit the input's: the
same rank, the same size in each fixed dimension, and the same size
wherever inputs share a named dimension (batch). Inputs that the model
gives a default (an initializer of the same name) may be left out.

Each output is written to DIR/FILE.npy, where FILE is the output's name with
every character other than a letter, a digit, '-' and '_' turned into '_':
"logits" gives logits.npy, "present.0.key" gives present_0_key.npy and
"/model/out" gives _model_out.npy. Names that would still collide get _2,
_3, … in the model's output order. A bfloat16 output, which NumPy cannot
hold, is written as float32. An output that is not a numeric tensor (a
string tensor, a sequence, a map, as scikit-learn exports' labels and
ZipMap probabilities are) is written as FILE.json: nested arrays of
strings, an array of the elements, an object from key to value; one that
cannot be read is named on stderr and skipped. DIR is created if needed. The outputs are
written to temporary files first and renamed only when all of them are
complete, so a failed run leaves no partial file behind.

--adapter runs MODEL with an adapter (a HuggingFace PEFT directory or an
.onnx_adapter file) applied in memory, as "peftonnx apply" would apply
it; no file is written. On a model whose LoRA factors are graph inputs
(inject --as-inputs) a LoRA adapter is fed to those inputs instead. A
prefix adapter (PREFIX_TUNING) goes in front of MODEL's past inputs,
which keep their meaning: feed input_ids, attention_mask, position_ids and
the past as for MODEL itself (an empty past, length 0, for a fresh call);
the present outputs leave the prefix out. A model carries LoRA or a
prefix, not both.`,
		run: runRun,
	})
}

func runRun(cx *context, args []string) error {
	fs := cx.flags()
	var inputs stringList
	fs.Var(&inputs, "input", "feed input `NAME=FILE.npy`; repeat for each input")
	outDir := fs.String("output-dir", "", "write one `DIR`/<output>.npy per output (required)")
	rt := addRuntimeFlags(fs)
	adapterPath := addAdapterFlag(fs, "apply this LoRA or prefix adapter in memory first")
	defaults := fs.Bool("defaults", false, "feed the inputs not given their defaults (masks of ones, token types of zeros, positions, empty caches, zero states)")
	model, err := cx.parseOne(args, "MODEL", "--output-dir")
	if err != nil {
		return err
	}
	if err := rt.check(cx); err != nil {
		return err
	}
	feeds, err := parseFeeds(cx, inputs)
	if err != nil {
		return err
	}

	// openAdapted loads the graph first: its errors name the model file
	// and a missing external data file, before ONNX Runtime is involved.
	sess, err := openAdapted(model, *adapterPath, rt.options()...)
	if err != nil {
		return err
	}
	defer sess.Close()

	tensors := map[string]*ortrt.Tensor{}
	for _, f := range feeds {
		if _, ok := sess.Feeds[f.name]; ok {
			return fmt.Errorf("input %q is given by --input %s and by --adapter %s", f.name, f.file, *adapterPath)
		}
		if tensors[f.name], err = readTensor(f.file); err != nil {
			return err
		}
	}
	for name, t := range sess.Feeds {
		tensors[name] = t
	}
	if *defaults {
		notes, err := fillDefaults(sess.Inputs(), sess.Outputs(), tensors)
		if err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintf(cx.stderr, "peftonnx: note: feeding %s\n", n)
		}
	}
	if err := checkFeeds(sess.Inputs(), feeds, tensors); err != nil {
		return err
	}
	results, values, err := runAll(sess.Session, tensors)
	if err != nil {
		return err
	}

	var outs []namedArray
	var notes []string
	for _, v := range sess.Outputs() {
		t, ok := results[v.Name]
		if val := values[v.Name]; !ok && val != nil {
			b, err := valueJSON(val)
			if err != nil {
				notes = append(notes, fmt.Sprintf("output %q was not written: %s %v", v.Name, val.Kind(), err))
				continue
			}
			outs = append(outs, namedArray{name: v.Name, json: b, kind: valueColumns(val)})
			continue
		}
		if !ok {
			why := sess.OutputProblem(v.Name)
			if why == "" {
				why = "the runtime cannot return " + v.String()
			}
			notes = append(notes, fmt.Sprintf("output %q was not written: %s", v.Name, why))
			continue
		}
		a, note, err := arrayFromTensor(t)
		if err != nil {
			return fmt.Errorf("output %q: %w", v.Name, err)
		}
		if note != "" {
			notes = append(notes, fmt.Sprintf("output %q %s", v.Name, note))
		}
		outs = append(outs, namedArray{name: v.Name, array: a})
	}
	files, err := writeArrays(*outDir, outs)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(cx.stdout, 0, 0, 2, ' ', 0)
	for i, o := range outs {
		if o.json != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", o.name, o.kind, files[i])
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.name, o.array.DType, npy.FormatShape(o.array.Shape), files[i])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintf(cx.stderr, "peftonnx: note: %s\n", n)
	}
	return nil
}

// fillDefaults adds to tensors the default of every required input that
// it lacks and whose role has one (runtime.DefaultFeed), sized from the
// token ids (batch and sequence) and any cache given (the past), and
// returns what it fed, one line per input.
func fillDefaults(inputs, outputs []ortrt.ValueInfo, tensors map[string]*ortrt.Tensor) ([]string, error) {
	plan := ortrt.FeedPlan(inputs, outputs)
	batch, seq, past, sized := 1, 1, 0, false
	for _, s := range plan.Slots() {
		t := tensors[s.Name]
		if t == nil {
			continue
		}
		shape := t.Shape()
		switch {
		case s.Role == roles.TokenIDs && len(shape) == 2:
			batch, seq, sized = int(shape[0]), int(shape[1]), true
		case s.Role == roles.Cache && s.LengthAxis >= 0 && s.LengthAxis < len(shape):
			past = int(shape[s.LengthAxis])
		}
	}
	var notes []string
	for _, s := range plan.Slots() {
		if tensors[s.Name] != nil || s.Optional || !s.HasDefault() {
			continue
		}
		if !sized {
			return nil, fmt.Errorf("--defaults: the model's input %s needs the token ids' batch and length: give them with --input", s.Input)
		}
		t, err := ortrt.DefaultFeed(s, batch, seq, past)
		if err != nil {
			return nil, fmt.Errorf("--defaults: %w", err)
		}
		tensors[s.Name] = t
		notes = append(notes, fmt.Sprintf("%s as %s %s: %s", s.Name, t.DType(), npy.FormatShape(t.Shape()), s.Default()))
	}
	return notes, nil
}

// feed is one --input NAME=FILE.
type feed struct{ name, file string }

// parseFeeds splits the --input values at their first "=".
func parseFeeds(cx *context, values []string) ([]feed, error) {
	var feeds []feed
	seen := map[string]bool{}
	for _, v := range values {
		name, file, ok := strings.Cut(v, "=")
		if !ok || name == "" || file == "" {
			return nil, cx.usagef("--input %q: want NAME=FILE.npy", v)
		}
		if seen[name] {
			return nil, cx.usagef("--input %q is given twice", name)
		}
		seen[name] = true
		feeds = append(feeds, feed{name, file})
	}
	return feeds, nil
}

// readTensor reads an .npy file into a runtime tensor.
func readTensor(path string) (*ortrt.Tensor, error) {
	a, err := npy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := tensorFromArray(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// checkFeeds checks the names, element types and shapes of the inputs
// against the model before the run, so that errors name the .npy file.
func checkFeeds(model []ortrt.ValueInfo, feeds []feed, tensors map[string]*ortrt.Tensor) error {
	byName := map[string]ortrt.ValueInfo{}
	for _, v := range model {
		byName[v.Name] = v
	}
	// dims records the size first given to each named dimension.
	type dimSeen struct {
		size  int64
		input string
	}
	dims := map[string]dimSeen{}
	for _, f := range feeds {
		v, ok := byName[f.name]
		if !ok {
			return fmt.Errorf("unknown input %q (from %s); the model's inputs are %s", f.name, f.file, describeInputs(model))
		}
		t := tensors[f.name]
		shape := t.Shape()
		mismatch := func(format string, args ...any) error {
			return fmt.Errorf("input %q from %s is %s %s, want %s: %s", f.name, f.file, t.DType(), npy.FormatShape(shape), describeInfo(v), fmt.Sprintf(format, args...))
		}
		if t.DType() != v.DType {
			return mismatch("the element type differs")
		}
		if v.Shape == nil {
			continue
		}
		if len(shape) != len(v.Shape) {
			return mismatch("rank %d, want %d", len(shape), len(v.Shape))
		}
		for i, d := range v.Shape {
			switch {
			case d >= 0 && shape[i] != d:
				return mismatch("dimension %d is %d, want %d", i, shape[i], d)
			case d < 0 && v.DimParams[i] != "":
				p := v.DimParams[i]
				if s, ok := dims[p]; ok && s.size != shape[i] {
					return mismatch("dimension %d (%s) is %d, but input %q has %s = %d", i, p, shape[i], s.input, p, s.size)
				} else if !ok {
					dims[p] = dimSeen{shape[i], f.name}
				}
			}
		}
	}
	var missing []string
	for _, v := range model {
		if _, fed := tensors[v.Name]; !fed && !v.Optional {
			missing = append(missing, v.Name+" "+describeInfo(v))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing --input for %s", strings.Join(missing, ", "))
	}
	return nil
}

// describeInfo writes an input's element type and shape as inspect does:
// int64 [batch, 8].
func describeInfo(v ortrt.ValueInfo) string {
	if v.Shape == nil {
		return v.DType.String() + " [...]"
	}
	dims := make([]string, len(v.Shape))
	for i, d := range v.Shape {
		switch {
		case d >= 0:
			dims[i] = fmt.Sprint(d)
		case v.DimParams[i] != "":
			dims[i] = v.DimParams[i]
		default:
			dims[i] = "?"
		}
	}
	return v.DType.String() + " [" + strings.Join(dims, ", ") + "]"
}

// describeInputs lists the model's inputs with their types and shapes.
func describeInputs(model []ortrt.ValueInfo) string {
	parts := make([]string, len(model))
	for i, v := range model {
		parts[i] = v.Name + " " + describeInfo(v)
		if v.Optional {
			parts[i] += " (optional)"
		}
	}
	return strings.Join(parts, ", ")
}

// namedArray is one output to write: an .npy array, or the JSON of an
// output that is no numeric tensor (valueJSON), with kind naming it.
type namedArray struct {
	name  string
	array *npy.Array
	json  []byte
	kind  string
}

// valueColumns is what run's table says of a non-tensor output in its type
// and shape columns: "string\t(2,)", "sequence\t(2)", "map\t(3)".
func valueColumns(v *ortrt.Value) string {
	switch {
	case v.Strings != nil || v.Shape != nil:
		return "string\t" + npy.FormatShape(v.Shape)
	case v.Keys != nil:
		return fmt.Sprintf("map\t(%d)", v.Len())
	case v.Tensor != nil:
		return v.Tensor.DType().String() + "\t" + npy.FormatShape(v.Tensor.Shape())
	}
	return fmt.Sprintf("sequence\t(%d)", len(v.Elems))
}

// runAll runs sess once for every output it can give: through RunValues
// where some output is a string tensor, a sequence or a map, else Run.
func runAll(sess *ortrt.Session, tensors map[string]*ortrt.Tensor) (map[string]*ortrt.Tensor, map[string]*ortrt.Value, error) {
	for _, v := range sess.Outputs() {
		if sess.OutputProblem(v.Name) != "" {
			return sess.RunValues(tensors)
		}
	}
	res, err := sess.Run(tensors, nil)
	return res, nil, err
}

// maxOutputBase is the longest file name that outputFileNames makes from
// an output's name, before ".npy".
const maxOutputBase = 128

// outputFileNames returns the file name for each output name: characters
// other than ASCII letters, digits, '-' and '_' become '_', "" becomes
// "output", a name past maxOutputBase keeps its start and a hash of the
// whole, and names that would collide get "_2", "_3", … in order.
func outputFileNames(names []string) []string {
	used := map[string]bool{}
	files := make([]string, len(names))
	for i, n := range names {
		base := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '_'
		}, n)
		if base == "" {
			base = "output"
		}
		if len(base) > maxOutputBase {
			// File systems take names of 255 bytes, and the temporary
			// name adds some: keep the start and tell names apart by a
			// hash of the whole.
			h := fnv.New64a()
			h.Write([]byte(n))
			base = fmt.Sprintf("%s_%016x", base[:maxOutputBase-17], h.Sum64())
		}
		name := base
		for k := 2; used[strings.ToLower(name)]; k++ {
			name = fmt.Sprintf("%s_%d", base, k)
		}
		used[strings.ToLower(name)] = true
		files[i] = name + ".npy"
	}
	return files
}

// writeArrays writes each array to dir under its output's file name. All
// files are written to temporary names first and renamed once every one is
// complete; on an error the temporary files are removed. It returns the
// paths written.
func writeArrays(dir string, outs []namedArray) (paths []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("output dir: %w", err)
	}
	names := make([]string, len(outs))
	for i, o := range outs {
		names[i] = o.name
	}
	files := outputFileNames(names)
	var set atomicfile.Set
	defer set.Abort()
	for i, o := range outs {
		name := files[i]
		if o.json != nil {
			name = strings.TrimSuffix(name, ".npy") + ".json"
		}
		path := filepath.Join(dir, name)
		f, err := set.Create(path, 0o644)
		if err != nil {
			return nil, err
		}
		if o.json != nil {
			_, err = f.Write(o.json)
		} else {
			err = npy.Write(f, o.array)
		}
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	if err := set.Commit(); err != nil {
		return nil, err
	}
	return paths, nil
}

// tensorFromArray copies an .npy array into a runtime tensor of its
// element type. The tensor's data is a slice of the Go type that holds
// that type (float16 as bit patterns), which binary.Decode fills from the
// array's little-endian bytes, a bool as true when its byte is not zero,
// as npy.Values reads them.
func tensorFromArray(a *npy.Array) (*ortrt.Tensor, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	t, err := ortrt.Zeros(a.DType, a.Shape)
	if err != nil {
		return nil, err
	}
	if _, err := binary.Decode(a.Data, binary.LittleEndian, t.Data()); err != nil {
		return nil, fmt.Errorf("decoding %s array: %w", a.DType, err)
	}
	return t, nil
}

// arrayFromTensor copies a runtime tensor into an .npy array, its data
// encoded as tensorFromArray decodes it. A bfloat16 tensor becomes
// float32, and note says so.
func arrayFromTensor(t *ortrt.Tensor) (a *npy.Array, note string, err error) {
	elem, data := t.DType(), t.Data()
	if elem == dtype.BFloat16 {
		elem, data = dtype.Float32, t.ToFloat32()
		note = "is bfloat16, which .npy cannot hold: written as float32"
	}
	b, err := binary.Append(nil, binary.LittleEndian, data)
	a = &npy.Array{DType: elem, Shape: t.Shape(), Data: b}
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		return nil, "", fmt.Errorf("element type %s cannot be written to .npy: %w", t.DType(), err)
	}
	return a, note, nil
}
