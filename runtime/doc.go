// Package runtime runs ONNX models on ONNX Runtime, through
// github.com/yalue/onnxruntime_go, on the CPU or on CUDA.
//
// Its name clashes with the standard library's runtime package; import it
// under another name where both are needed:
//
//	import ortrt "github.com/peftonnx/peftonnx/runtime"
//
// A Session is one model loaded into ONNX Runtime, from a file
// (NewSession) or from bytes in memory (NewSessionFromBytes). Inputs and
// outputs are Tensors: an element type, a shape and a Go slice. Run feeds
// inputs by name and returns the outputs by name, with any sizes in the
// model's dynamic dimensions; it checks every input's name, element type and
// shape against the model first, and its errors name the input and both the
// expected and the given value. RunInto writes into output tensors that the
// caller allocates, and a Binding runs one set of input tensors over and
// over without allocating, as a training loop does.
//
// Inputs that have a default in the model (an initializer of the same name,
// the layout of LoRA "adapters as inputs") are optional: Session.Inputs marks
// them, and a run may feed them or leave them to their defaults, on the one
// session. FeedPlan sorts a session's inputs by role (token ids, masks,
// positions, caches), as package feed does.
//
// # Float16 defaults
//
// ONNX Runtime 1.24 crashes the whole process inside CreateSession, at its
// highest optimization level (OptimizeAll, the default), on a model where a
// float16 input with a default feeds a Cast to float32, as the CPU provider
// inserts before a MatMul: its optimizer
// FuseFp16InitializerToFp32NodeTransformer takes the default for a constant
// (microsoft/onnxruntime#32143). LoRA adapters as inputs in float16 are such
// a model. A session therefore hides the float16 defaults from ONNX Runtime
// (a model from a file then goes to it as bytes), which then sees required
// inputs, and feeds the defaults itself on every run; runs look and perform
// as on any other model. Where the session cannot feed them (defaults over
// 64 MiB in all, sparse ones, or ones in external files of a model loaded
// from bytes), it disables that one optimizer instead, and ONNX Runtime
// casts the model's float16 weights on every run rather than once. Models
// without float16 defaults, and lower levels, are opened as they always
// were.
//
// # Generation
//
// A Generator runs a decoder that has a KV cache: per-layer
// past_key_values.{i}.key/value inputs with present.{i}.* outputs, the
// stacked past_{i}/present_{i} of older GPT-2 exports, or any other naming
// that package feed recognises (Whisper's past_key_self_{i}, one past for
// every layer), on every layer or on some, beside recurrent or convolution
// states (past_conv.{i}) that each step carries to the next without a
// past-length axis. Ids, masks and positions are fed in the integer type
// the model declares, token types as zeros. Generate prefills the prompt
// with an empty past and zero states, then feeds one token per step, greedy
// or sampled (temperature, top-k, top-p, repetition penalty, seeded). The
// cache lives in two buffers per tensor that swap roles each step (ONNX
// Runtime writes the present into one while the other is fed as the past),
// so no cache data is copied or allocated per step.
//
// A server whose rows come and go steps a Sequence itself: Join appends
// the rows of another Sequence (shorter caches padded on the left and
// masked), KeepRows drops rows that ended, SetPast starts rows on a
// precomputed past such as a prefix adapter's, and a Sampler per row
// chooses tokens as Generate does.
//
// # Finding the library
//
// ONNX Runtime is a shared library that the process loads once. Init loads
// it, and NewSession calls Init. The library is, in order of precedence:
//
//   - the path given with WithLibrary;
//   - the path in the ONNXRUNTIME_LIB environment variable;
//   - .ort/libonnxruntime.so.1 in the working directory or the nearest of
//     its parents that has one, which is where scripts/fetch-ort.sh puts it;
//   - the same, searched upward from the directory of the executable.
//
// Where none is found, Init returns ErrLibraryNotFound. The first library
// loaded stays for the life of the process; asking for another is an error.
// The library must be ONNX Runtime 1.24 or newer, the C API that
// onnxruntime_go v1.27 is built against.
//
// # Providers
//
// Sessions run on the CPU by default. WithCUDA(deviceID) asks for the CUDA
// provider, which needs a CUDA build of the library (the one that
// scripts/fetch-ort.sh fetches is CPU only); with any other build,
// NewSession returns an error that wraps ErrCUDAUnavailable and names the
// library. WithDevice parses "cpu", "cuda" or "cuda:N" from a flag.
// WithIntraOpThreads, WithInterOpThreads, WithOptimizationLevel, WithProfiling,
// WithMemoryArena, WithMemoryPattern, WithPrepacking, WithOptimizedModelPath
// and WithConfigEntry set the matching ONNX Runtime session options.
//
// # Resource lifetimes
//
// A Session holds native memory that the Go garbage collector does not see:
// call Close when done with it. Close waits for runs in progress, closes the
// session's Bindings, and is safe to call twice. A Binding holds native
// memory too and has its own Close. Tensors are plain Go memory and need no
// closing.
//
// Tensors passed to a run are handed to ONNX Runtime without a copy, so they
// must not change until the run returns; a Binding keeps using its input
// tensors' memory until it is closed. Run returns new tensors that belong to
// the caller, while a Binding returns the same output tensors on every Run.
//
// # Limits
//
// Sessions take tensors of the numeric and bool element types (see Supported),
// not strings, sequences or maps. Run returns those tensors only;
// RunValues also returns the outputs that are string tensors, sequences
// or maps (scikit-learn's labels and ZipMap probabilities) as Values, and
// OutputProblem says why Run leaves an output out. Rank-0 float16 and bfloat16 tensors cannot
// be fed, a limit of onnxruntime_go. onnxruntime_go cannot return a float16
// or scalar output that ONNX Runtime allocated, so where the shape of such an
// output is not known in advance the session adds two small outputs to the
// graph (the output flattened, cast to float32 if it is a 16-bit float, and
// its shape) and rebuilds the tensor from them; a model loaded from a file
// then goes to ONNX Runtime as bytes. ONNX Runtime runs the whole graph
// whichever outputs are asked for, so asking for fewer saves copies, not
// compute.
//
// ONNX Runtime's own log prints fatal messages only, since its errors come
// back as this package's; LogLevelEnv (PEFTONNX_ORT_LOG) shows more. An
// allocation that fails inside ONNX Runtime is ErrOutOfMemory.
package runtime
