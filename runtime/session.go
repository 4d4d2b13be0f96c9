package runtime

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"
)

// Session is a model loaded into ONNX Runtime, ready to run. It is safe for
// concurrent use by several goroutines; Close waits for runs in progress.
type Session struct {
	name    string // the model's path, or "in-memory model", for errors
	inputs  []ValueInfo
	outputs []ValueInfo
	inIdx   map[string]int
	outIdx  map[string]int
	plans   []outPlan

	// defaults holds the default values of the optional inputs when the
	// session feeds them itself (see runCore); then the core session takes
	// every input. Otherwise defaults is nil and noDefaults says why.
	defaults   map[string]*Tensor
	noDefaults error

	// guard keeps ONNX Runtime from crashing on float16 defaults.
	guard float16Guard

	core    *ort.DynamicAdvancedSession
	coreIn  []string
	coreOut []string

	// noBind is set once a run found the declared static output shapes to
	// be wrong; from then on runs let ONNX Runtime allocate the outputs.
	noBind atomic.Bool

	mu       sync.RWMutex // held for reading by runs, for writing by Close
	closed   bool
	bindings map[*Binding]struct{}
}

// outPlan says how a run fetches one output.
type outPlan struct {
	// slot is the output's index among the core session's outputs, where
	// ONNX Runtime allocates it and onnxruntime_go copies it out; -1 if not.
	slot int
	// dataSlot and shapeSlot index the output's shadow outputs; -1 if none.
	dataSlot, shapeSlot int
	// bindable means the shape is static, so a run can allocate the output
	// itself and have ONNX Runtime write into it.
	bindable bool
	// why says why Run cannot return this output at all; "" if it can.
	why string
	// valueSlot indexes a string tensor, sequence or map among the core
	// session's outputs, which RunValues returns; -1 if none.
	valueSlot int
}

// maxDefaultBytes bounds the default values of optional inputs that a
// session keeps in Go memory to feed them itself.
const maxDefaultBytes = 64 << 20

const externalFolderKey = "session.model_external_initializers_file_folder_path"

// NewSession loads the ONNX model at path. External data files are found
// relative to the model's directory. It calls Init first.
func NewSession(path string, opts ...Option) (*Session, error) {
	cfg, err := initConfig(opts)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	defer f.Close()
	src, err := newFileSource(f)
	if err != nil {
		return nil, errorf("%w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, errorf("%w", err)
	}
	s, err := prepare(path, src, dir, cfg)
	if err != nil {
		return nil, err
	}
	patch := s.shadowPatch()
	if patch == nil && s.guard.tags == nil {
		err = s.open(cfg, nil, func(so *ort.SessionOptions) (*ort.DynamicAdvancedSession, error) {
			return ort.NewDynamicAdvancedSession(path, s.coreIn, s.coreOut, so)
		})
	} else {
		// The shadow outputs are appended to the serialized model, or its
		// float16 defaults hidden, so ONNX Runtime loads it from memory and
		// must be told where external data lives.
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			return nil, errorf("%w", err)
		}
		if err = hideInitializers(b, s.guard.tags); err != nil {
			return nil, errorf("%s: %w", path, err)
		}
		b = append(b, patch...)
		err = s.open(cfg, [][2]string{{externalFolderKey, dir}}, func(so *ort.SessionOptions) (*ort.DynamicAdvancedSession, error) {
			return ort.NewDynamicAdvancedSessionWithONNXData(b, s.coreIn, s.coreOut, so)
		})
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewSessionFromBytes loads a serialized ONNX model from memory, without a
// temporary file. The session does not keep b. ONNX Runtime looks for
// external data files in the working directory, unless WithConfigEntry sets
// "session.model_external_initializers_file_folder_path"; the session then
// reads the defaults of optional inputs from there too. It calls Init
// first.
func NewSessionFromBytes(b []byte, opts ...Option) (*Session, error) {
	cfg, err := initConfig(opts)
	if err != nil {
		return nil, err
	}
	const name = "in-memory model"
	if len(b) == 0 {
		return nil, errorf("%s: no bytes", name)
	}
	s, err := prepare(name, memSource(b), cfg.entry(externalFolderKey), cfg)
	if err != nil {
		return nil, err
	}
	if patch := s.shadowPatch(); patch != nil || s.guard.tags != nil {
		// A copy: the caller's bytes stay as they are.
		b = append(append(make([]byte, 0, len(b)+len(patch)), b...), patch...)
		if err := hideInitializers(b, s.guard.tags); err != nil {
			return nil, errorf("%s: %w", name, err)
		}
	}
	err = s.open(cfg, nil, func(so *ort.SessionOptions) (*ort.DynamicAdvancedSession, error) {
		return ort.NewDynamicAdvancedSessionWithONNXData(b, s.coreIn, s.coreOut, so)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// prepare reads the model's interface and plans how runs feed inputs and
// fetch outputs, and how to keep ONNX Runtime from crashing on the model at
// the options of cfg.
func prepare(name string, src source, baseDir string, cfg *config) (*Session, error) {
	info, err := readModelInfo(src)
	if err != nil {
		return nil, errorf("%s: reading model: %w", name, err)
	}
	s := &Session{
		name:     name,
		inputs:   info.inputs,
		outputs:  info.outputs,
		inIdx:    make(map[string]int, len(info.inputs)),
		outIdx:   make(map[string]int, len(info.outputs)),
		bindings: map[*Binding]struct{}{},
	}
	for i, v := range s.inputs {
		s.inIdx[v.Name] = i
	}
	for i, v := range s.outputs {
		s.outIdx[v.Name] = i
	}
	s.loadDefaults(info, src, baseDir)
	s.guardFloat16Defaults(info, cfg)
	for _, v := range s.inputs {
		if !v.Optional || s.defaults != nil {
			s.coreIn = append(s.coreIn, v.Name)
		}
	}
	var shadowed []int
	s.plans = make([]outPlan, len(s.outputs))
	for i, v := range s.outputs {
		p := outPlan{slot: -1, dataSlot: -1, shapeSlot: -1, valueSlot: -1}
		switch {
		case v.DType == dtype.Undefined:
			p.why = "it is " + info.kinds[v.Name] + ", not a tensor"
			if fetchable(v, info.kinds[v.Name]) {
				p.valueSlot = len(s.coreOut)
				s.coreOut = append(s.coreOut, v.Name)
			}
		case !Supported(v.DType):
			p.why = "its element type is " + v.DType.String()
			if fetchable(v, "") {
				p.valueSlot = len(s.coreOut)
				s.coreOut = append(s.coreOut, v.Name)
			}
		default:
			p.bindable = v.static() && !(isHalf(v.DType) && len(v.Shape) == 0)
			switch {
			case !needsShadow(v):
				p.slot = len(s.coreOut)
				s.coreOut = append(s.coreOut, v.Name)
			case canShadow(v, info.opset):
				shadowed = append(shadowed, i)
			case !p.bindable:
				p.why = fmt.Sprintf("it is %s and the model's opset %d is too old to convert it", v, info.opset)
			}
		}
		s.plans[i] = p
	}
	for _, i := range shadowed {
		data, shape := shadowNames(s.outputs[i].Name)
		s.plans[i].dataSlot = len(s.coreOut)
		s.plans[i].shapeSlot = len(s.coreOut) + 1
		s.coreOut = append(s.coreOut, data, shape)
	}
	return s, nil
}

// loadDefaults reads the defaults of the optional inputs, if they are small
// and inline, so that a run may leave any of them unfed.
func (s *Session) loadDefaults(info *modelInfo, src source, baseDir string) {
	var total int64
	defaults := map[string]*Tensor{}
	for _, v := range s.inputs {
		if !v.Optional {
			continue
		}
		if info.sparseDefaults[v.Name] {
			s.noDefaults = fmt.Errorf("the default of %q is a sparse initializer", v.Name)
			return
		}
		sp := info.defaultSpans[v.Name]
		if total += sp.n; total > maxDefaultBytes {
			s.noDefaults = fmt.Errorf("the defaults of the optional inputs take more than %d MiB", maxDefaultBytes>>20)
			return
		}
		b, err := src.at(sp.off, int(sp.n))
		if err == nil {
			tp := &onnxpb.TensorProto{}
			if err = proto.Unmarshal(b, tp); err == nil {
				var t *Tensor
				if t, err = tensorFromProto(tp, baseDir); err == nil {
					if isHalf(t.elem) && t.Rank() == 0 {
						err = errHalfScalar
					}
					defaults[v.Name] = t
				}
			}
		}
		if err != nil {
			s.noDefaults = fmt.Errorf("the default of %q cannot be read: %w", v.Name, err)
			return
		}
	}
	if len(defaults) > 0 {
		s.defaults = defaults
	}
}

// shadowPatch returns the bytes that add the shadow outputs, or nil when no
// output needs them.
func (s *Session) shadowPatch() []byte {
	var ys []ValueInfo
	for i, p := range s.plans {
		if p.dataSlot >= 0 {
			ys = append(ys, s.outputs[i])
		}
	}
	if ys == nil {
		return nil
	}
	return shadowPatch(ys)
}

// open creates the ONNX Runtime session.
func (s *Session) open(cfg *config, extra [][2]string,
	create func(*ort.SessionOptions) (*ort.DynamicAdvancedSession, error)) error {
	so, err := cfg.sessionOptions(append(extra[:len(extra):len(extra)], s.guard.entries...))
	if err != nil {
		return err
	}
	defer so.Destroy()
	core, err := create(so)
	if err != nil {
		return errorf("%s: creating ONNX Runtime session: %w", s.name, ortError("creating the session", err))
	}
	s.core = core
	return nil
}

// Inputs describes the inputs that a run may feed, in the model's order.
// Optional inputs, which have defaults, are marked.
func (s *Session) Inputs() []ValueInfo { return cloneInfos(s.inputs) }

// Outputs describes the model's outputs, in the model's order.
func (s *Session) Outputs() []ValueInfo { return cloneInfos(s.outputs) }

func cloneInfos(vs []ValueInfo) []ValueInfo {
	out := make([]ValueInfo, len(vs))
	for i, v := range vs {
		out[i] = v
		if v.Shape != nil {
			out[i].Shape = cloneShape(v.Shape)
			out[i].DimParams = append([]string(nil), v.DimParams...)
		}
	}
	return out
}

// Close releases the ONNX Runtime session and the bindings made from it. It
// waits for runs in progress. Closing twice, or a nil Session, is safe.
func (s *Session) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for b := range s.bindings {
		b.release()
	}
	s.bindings = nil
	s.defaults = nil
	if err := s.core.Destroy(); err != nil {
		return errorf("%s: closing: %w", s.name, err)
	}
	return nil
}

func (s *Session) errClosed() error {
	return errorf("%s: session is closed", s.name)
}

// checkInputs checks names, element types and shapes of the inputs against
// the model, and that every required input is there.
func (s *Session) checkInputs(inputs map[string]*Tensor) error {
	for _, name := range slices.Sorted(maps.Keys(inputs)) {
		i, ok := s.inIdx[name]
		if !ok {
			return errorf("%s: unknown input %q (%s)", s.name, name, s.describeInputs())
		}
		if err := checkTensor(s.inputs[i], inputs[name]); err != nil {
			return errorf("%s: input %w", s.name, err)
		}
	}
	var missing []string
	for _, v := range s.inputs {
		if !v.Optional && inputs[v.Name] == nil {
			missing = append(missing, fmt.Sprintf("%q (%s)", v.Name, v))
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return errorf("%s: missing input %s", s.name, missing[0])
	}
	return errorf("%s: missing inputs %s", s.name, strings.Join(missing, ", "))
}

// checkTensor checks t against what the model declares for v.
func checkTensor(v ValueInfo, t *Tensor) error {
	switch {
	case t == nil:
		return fmt.Errorf("%q: nil tensor", v.Name)
	case v.DType == dtype.Undefined:
		return fmt.Errorf("%q: not a tensor in the model; runtime can only feed tensors", v.Name)
	case !Supported(v.DType):
		return fmt.Errorf("%q: element type %s is not supported", v.Name, v.DType)
	case t.elem != v.DType:
		return fmt.Errorf("%q: element type %s, want %s (%s)", v.Name, t.elem, v.DType, v)
	case v.Shape == nil:
		return nil
	case len(t.shape) != len(v.Shape):
		return fmt.Errorf("%q: shape %v has rank %d, want rank %d (%s)",
			v.Name, t.shape, len(t.shape), len(v.Shape), v)
	}
	for i, d := range v.Shape {
		if d >= 0 && t.shape[i] != d {
			return fmt.Errorf("%q: shape %v has %d at axis %d, want %d (%s)",
				v.Name, t.shape, t.shape[i], i, d, v)
		}
	}
	return nil
}

func (s *Session) describeInputs() string {
	var req, opt []string
	for _, v := range s.inputs {
		if v.Optional {
			opt = append(opt, v.Name)
		} else {
			req = append(req, v.Name)
		}
	}
	d := "inputs: " + strings.Join(req, ", ")
	if len(req) == 0 {
		d = "no required inputs"
	}
	if len(opt) > 0 {
		d += "; optional: " + strings.Join(opt, ", ")
	}
	return d
}

// OutputProblem says why Run cannot return output name ("it is a
// sequence of maps from int64 to float32 tensors, not a tensor", "its
// element type is string"), and "" where it can, or where the model has
// no such output.
func (s *Session) OutputProblem(name string) string {
	if i, ok := s.outIdx[name]; ok {
		return s.plans[i].why
	}
	return ""
}

// selectOutputs resolves output names to indices; nil selects every output
// that Run can return, and is an error where there is none.
func (s *Session) selectOutputs(names []string) ([]int, error) {
	if len(names) == 0 {
		var all []int
		var why []string
		for i, p := range s.plans {
			if p.why == "" {
				all = append(all, i)
			} else {
				why = append(why, fmt.Sprintf("%q: %s", s.outputs[i].Name, p.why))
			}
		}
		if len(all) == 0 {
			return nil, errorf("%s: no output of the model can be returned (%s)", s.name, strings.Join(why, "; "))
		}
		return all, nil
	}
	seen := make(map[int]bool, len(names))
	idx := make([]int, 0, len(names))
	for _, name := range names {
		i, ok := s.outIdx[name]
		if !ok {
			return nil, errorf("%s: unknown output %q (outputs: %s)",
				s.name, name, strings.Join(s.outputNames(), ", "))
		}
		if p := s.plans[i]; p.why != "" {
			return nil, errorf("%s: output %q cannot be returned: %s", s.name, name, p.why)
		}
		if !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	return idx, nil
}

func (s *Session) outputNames() []string {
	names := make([]string, len(s.outputs))
	for i, v := range s.outputs {
		names[i] = v.Name
	}
	return names
}
func joinNames(names []string) string { return strings.Join(names, ", ") }
