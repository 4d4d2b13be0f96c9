package runtime

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/peftonnx/peftonnx/internal/option"
)

// Option configures Init and sessions. Options check their values and make
// NewSession fail with a clear error when a value is out of range.
type Option func(*config) error

// OptimizationLevel is how far ONNX Runtime rewrites the graph before it
// runs it.
type OptimizationLevel int

// The graph optimization levels of ONNX Runtime. The default is OptimizeAll.
const (
	OptimizeNone OptimizationLevel = iota
	OptimizeBasic
	OptimizeExtended
	OptimizeAll
)

// String returns the level's name, such as "all".
func (l OptimizationLevel) String() string {
	return enumName(l, "OptimizationLevel", optimizationLevelNames)
}

var optimizationLevelNames = map[OptimizationLevel]string{
	OptimizeNone:     "none",
	OptimizeBasic:    "basic",
	OptimizeExtended: "extended",
	OptimizeAll:      "all",
}

// ErrCUDAUnavailable is wrapped by the error that NewSession returns when
// WithCUDA was asked for and the loaded library cannot provide it. Tests use
// errors.Is with it to skip.
var ErrCUDAUnavailable = errors.New("CUDA provider not available")

type config struct {
	library       string
	intraOp       int
	interOp       int
	cuda          bool // CUDA provider on GPU deviceID, else CPU only
	deviceID      int
	optLevel      OptimizationLevel
	profilePrefix string
	entries       [][2]string
	noArena       bool   // CPU memory arena off
	sharedArena   bool   // allocate from the process's shared arena (shared_arena.go)
	noMemPattern  bool   // memory pattern planning off
	noPrepack     bool   // pre-packing of constant weights off
	optimizedPath string // where to write the optimized graph, if set
}

func newConfig(opts []Option) (*config, error) {
	c := &config{optLevel: OptimizeAll}
	if err := option.Apply(c, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// WithMemoryArena turns ONNX Runtime's CPU memory arena on (the default)
// or off. The arena keeps freed blocks for reuse, which saves allocations
// per run but holds on to the peak; off, memory goes back to the system
// allocator, which lowers the peak resident size of large training graphs.
func WithMemoryArena(on bool) Option {
	return func(c *config) error {
		c.noArena = !on
		return nil
	}
}

// WithMemoryPattern turns ONNX Runtime's memory pattern planning on (the
// default) or off. With it, a run of a shape seen before allocates one
// block for all its intermediates.
func WithMemoryPattern(on bool) Option {
	return func(c *config) error {
		c.noMemPattern = !on
		return nil
	}
}

// WithPrepacking turns ONNX Runtime's pre-packing of constant weights on
// (the default) or off. On, each frozen weight of a MatMul or Gemm is kept
// a second time in the layout its kernel multiplies fastest; off, the
// kernels read the weights where they are (mapped from the external data
// file, when the model has one) and re-pack panels as they go: less
// memory, slower products.
func WithPrepacking(on bool) Option {
	return func(c *config) error {
		c.noPrepack = !on
		return nil
	}
}

// WithOptimizedModelPath has ONNX Runtime write the graph it will run,
// after its graph optimizations, to path when the session opens: to see
// what it fused, folded or merged.
func WithOptimizedModelPath(path string) Option {
	return nonEmpty("WithOptimizedModelPath", "path", path, func(c *config) { c.optimizedPath = path })
}

// WithLibrary loads ONNX Runtime from path instead of searching for it. It
// takes effect only on the first successful Init of the process.
func WithLibrary(path string) Option {
	return nonEmpty("WithLibrary", "path", path, func(c *config) { c.library = path })
}

// MaxThreads is the most threads WithIntraOpThreads and
// WithInterOpThreads accept: far beyond any machine's cores, and far below
// the counts at which creating ONNX Runtime's thread pool fails (which
// ONNX Runtime 1.24 answers with a segmentation fault, not an error).
// The CLI sets it from PEFTONNX_MAX_THREADS.
var MaxThreads = 1024

// WithIntraOpThreads sets the number of threads that one operator may use.
// 0 keeps ONNX Runtime's default, one per core; at most MaxThreads.
func WithIntraOpThreads(n int) Option {
	return threadCount("WithIntraOpThreads", n, func(c *config) { c.intraOp = n })
}

// WithInterOpThreads sets the number of threads that run independent
// operators at the same time. A value above 1 also switches the session to
// parallel execution, without which ONNX Runtime ignores it. 0 keeps the
// default, sequential execution; at most MaxThreads.
func WithInterOpThreads(n int) Option {
	return threadCount("WithInterOpThreads", n, func(c *config) { c.interOp = n })
}

// WithCPU runs the session on the CPU provider only. This is the default.
func WithCPU() Option {
	return func(c *config) error {
		c.cuda = false
		c.deviceID = 0
		return nil
	}
}

// WithCUDA runs the session on the CUDA provider, on the given GPU, with the
// CPU provider taking the operators that CUDA lacks. It needs a CUDA build of
// ONNX Runtime; with any other build NewSession returns an error that wraps
// ErrCUDAUnavailable.
func WithCUDA(deviceID int) Option {
	return func(c *config) error {
		if deviceID < 0 {
			return errorf("WithCUDA: device id must be >= 0, got %d", deviceID)
		}
		c.cuda = true
		c.deviceID = deviceID
		return nil
	}
}

// WithDevice selects the provider from a string, as a --device flag gives
// it: "cpu", "cuda" (GPU 0) or "cuda:N".
func WithDevice(spec string) Option {
	return func(c *config) error {
		s := strings.ToLower(strings.TrimSpace(spec))
		switch {
		case s == "cpu" || s == "":
			return WithCPU()(c)
		case s == "cuda" || s == "gpu":
			return WithCUDA(0)(c)
		case strings.HasPrefix(s, "cuda:"):
			id, err := strconv.Atoi(s[len("cuda:"):])
			if err != nil {
				return errorf("WithDevice: bad device %q (want cpu, cuda or cuda:N)", spec)
			}
			return WithCUDA(id)(c)
		}
		return errorf("WithDevice: unknown device %q (want cpu, cuda or cuda:N)", spec)
	}
}

// WithOptimizationLevel sets the graph optimization level. Gradient checks
// may want OptimizeNone or OptimizeBasic, so that fusions do not change the
// numerics of the graph being checked.
func WithOptimizationLevel(l OptimizationLevel) Option {
	return func(c *config) error {
		if l < OptimizeNone || l > OptimizeAll {
			return errorf("WithOptimizationLevel: unknown level %d", int(l))
		}
		c.optLevel = l
		return nil
	}
}

// WithProfiling makes ONNX Runtime profile the session. It writes a JSON
// trace named prefix_<timestamp>.json when the session is closed.
func WithProfiling(prefix string) Option {
	return nonEmpty("WithProfiling", "file prefix", prefix, func(c *config) { c.profilePrefix = prefix })
}

// WithConfigEntry sets an ONNX Runtime session configuration entry, such as
// "session.intra_op.allow_spinning" = "0". Keys are ONNX Runtime's; see its
// onnxruntime_session_options_config_keys.h.
func WithConfigEntry(key, value string) Option {
	return nonEmpty("WithConfigEntry", "key", key, func(c *config) {
		c.entries = append(c.entries, [2]string{key, value})
	})
}

// threadCount is the Option that refuses a thread count n outside 0 to
// MaxThreads and applies set to any other.
func threadCount(option string, n int, set func(*config)) Option {
	return func(c *config) error {
		if n < 0 || n > MaxThreads {
			return errorf("%s: n must be from 0 to %d, got %d", option, MaxThreads, n)
		}
		set(c)
		return nil
	}
}

// nonEmpty is the Option that refuses an empty value, as
// "runtime: OPTION: empty WHAT", and applies set to any other.
func nonEmpty(option, what, value string, set func(*config)) Option {
	return func(c *config) error {
		if value == "" {
			return fmt.Errorf("runtime: %s: empty %s", option, what)
		}
		set(c)
		return nil
	}
}

// entry returns the value of the last WithConfigEntry for key, or "".
func (c *config) entry(key string) string {
	v := ""
	for _, kv := range c.entries {
		if kv[0] == key {
			v = kv[1]
		}
	}
	return v
}

// sessionOptions builds ONNX Runtime session options from c, with the
// config entries extra in place of any of c's with the same keys. The caller
// destroys them.
func (c *config) sessionOptions(extra [][2]string) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, errorf("creating session options: %w", err)
	}
	fail := func(what string, err error) (*ort.SessionOptions, error) {
		so.Destroy()
		return nil, errorf("%s: %w", what, err)
	}
	if level, err := logLevel(); err != nil {
		return fail("logging", err)
	} else if err := so.SetLogSeverityLevel(level); err != nil {
		return fail("setting the log level", err)
	}
	if c.intraOp > 0 {
		if err := so.SetIntraOpNumThreads(c.intraOp); err != nil {
			return fail("setting intra-op threads", err)
		}
	}
	if c.interOp > 0 {
		if err := so.SetInterOpNumThreads(c.interOp); err != nil {
			return fail("setting inter-op threads", err)
		}
		if c.interOp > 1 {
			if err := so.SetExecutionMode(ort.ExecutionModeParallel); err != nil {
				return fail("setting parallel execution", err)
			}
		}
	}
	levels := [...]ort.GraphOptimizationLevel{
		OptimizeNone:     ort.GraphOptimizationLevelDisableAll,
		OptimizeBasic:    ort.GraphOptimizationLevelEnableBasic,
		OptimizeExtended: ort.GraphOptimizationLevelEnableExtended,
		OptimizeAll:      ort.GraphOptimizationLevelEnableAll,
	}
	if err := so.SetGraphOptimizationLevel(levels[c.optLevel]); err != nil {
		return fail("setting optimization level", err)
	}
	if c.noArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return fail("turning off the CPU memory arena", err)
		}
	}
	if c.noMemPattern {
		if err := so.SetMemPattern(false); err != nil {
			return fail("turning off memory patterns", err)
		}
	}
	if c.optimizedPath != "" {
		if err := so.SetOptimizedModelFilePath(c.optimizedPath); err != nil {
			return fail("setting the optimized model's path", err)
		}
	}
	if c.profilePrefix != "" {
		if err := so.EnableProfiling(c.profilePrefix); err != nil {
			return fail("enabling profiling", err)
		}
	}
	if c.noPrepack {
		extra = append([][2]string{{"session.disable_prepacking", "1"}}, extra...)
	}
	if c.sharedArena && !c.noArena {
		if err := registerSharedArena(); err != nil {
			so.Destroy()
			return nil, err
		}
		extra = append([][2]string{{"session.use_env_allocators", "1"}}, extra...)
	}
	entries := slices.DeleteFunc(slices.Clone(c.entries), func(kv [2]string) bool {
		return slices.ContainsFunc(extra, func(x [2]string) bool { return x[0] == kv[0] })
	})
	for _, kv := range append(entries, extra...) {
		if err := so.AddSessionConfigEntry(kv[0], kv[1]); err != nil {
			return fail(fmt.Sprintf("config entry %q", kv[0]), err)
		}
	}
	if c.cuda {
		if err := appendCUDA(so, c.deviceID); err != nil {
			so.Destroy()
			return nil, errorf("%w in %s: %w", ErrCUDAUnavailable, LibraryPath(), err)
		}
	}
	return so, nil
}

func appendCUDA(so *ort.SessionOptions, deviceID int) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": strconv.Itoa(deviceID)}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(cuda)
}
