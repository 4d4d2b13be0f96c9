package runtime

import (
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryEnv is the environment variable that names the ONNX Runtime shared
// library. An explicit WithLibrary option overrides it.
const LibraryEnv = "ONNXRUNTIME_LIB"

// ErrLibraryNotFound is returned when no ONNX Runtime library was named and
// none was found by searching.
var ErrLibraryNotFound = errors.New("runtime: ONNX Runtime library not found (set " +
	LibraryEnv + " or run scripts/fetch-ort.sh)")

// libraryDir and libraryFile give where scripts/fetch-ort.sh installs the
// library, relative to the project root.
const libraryDir = ".ort"

func libraryFile() string {
	switch goruntime.GOOS {
	case "darwin":
		return "libonnxruntime.dylib"
	case "windows":
		return "onnxruntime.dll"
	}
	return "libonnxruntime.so.1"
}

// env is the process-wide ONNX Runtime environment. ONNX Runtime allows one
// per process, loaded from one library.
var env struct {
	mu      sync.Mutex
	path    string // library in use; "" until initialised
	version string
}

// FindLibrary returns the path of the ONNX Runtime library that Init would
// load without an explicit WithLibrary option: the file named by
// ONNXRUNTIME_LIB, or else the first .ort/libonnxruntime.so.1 found in the
// working directory or one of its parents, or else in the directory of the
// executable or one of its parents.
func FindLibrary() (string, error) {
	return findLibrary("")
}

func findLibrary(explicit string) (string, error) {
	if explicit != "" {
		return checkLibrary(explicit, "WithLibrary")
	}
	if p := os.Getenv(LibraryEnv); p != "" {
		return checkLibrary(p, LibraryEnv)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		if p, ok := searchUp(dir); ok {
			return p, nil
		}
	}
	return "", ErrLibraryNotFound
}

// checkLibrary makes path absolute and checks that it is a regular file;
// source says where the path came from, for the error.
func checkLibrary(path, source string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", errorf("%s=%q: %w", source, path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", errorf("%s=%q: ONNX Runtime library: %w", source, path, err)
	}
	if fi.IsDir() {
		return "", errorf("%s=%q: ONNX Runtime library is a directory", source, path)
	}
	return abs, nil
}

// searchUp looks for .ort/<library> in dir and each of its parents.
func searchUp(dir string) (string, bool) {
	for {
		p := filepath.Join(dir, libraryDir, libraryFile())
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// Init loads the ONNX Runtime library and creates the process-wide
// environment. Of the options, only WithLibrary matters here. NewSession and
// NewSessionFromBytes call Init themselves; call it first to fail early, or
// to learn which library is in use.
//
// The first successful call fixes the library for the life of the process.
// Later calls return nil, or an error when they name another library. A call
// that fails leaves nothing behind and returns its error; a later call tries
// again.
func Init(opts ...Option) error {
	_, err := initConfig(opts)
	return err
}

// initConfig reads opts and, as Init, loads the library they name; the
// session constructors start with it.
func initConfig(opts []Option) (*config, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := initEnv(cfg.library); err != nil {
		return nil, err
	}
	return cfg, nil
}

func initEnv(explicit string) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path != "" {
		if explicit == "" {
			return nil
		}
		want, err := checkLibrary(explicit, "WithLibrary")
		if err != nil {
			return err
		}
		if !sameFile(want, env.path) {
			return errorf("ONNX Runtime is already loaded from %s; cannot load %s in the same process",
				env.path, want)
		}
		return nil
	}
	if ort.IsInitialized() {
		// Someone else in this process set up onnxruntime_go directly.
		env.path = "(initialised outside package runtime)"
		env.version = ort.GetVersion()
		return nil
	}
	path, err := findLibrary(explicit)
	if err != nil {
		return err
	}
	level, err := logLevel()
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(envLogOption(level)); err != nil {
		return errorf("loading ONNX Runtime from %s: %w", path, err)
	}
	env.path = path
	env.version = ort.GetVersion()
	return nil
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// LibraryPath returns the path of the loaded ONNX Runtime library, or "" if
// Init has not yet succeeded.
func LibraryPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.path
}

// Version returns the version of the loaded ONNX Runtime library, such as
// "1.24.3", or "" if Init has not yet succeeded.
func Version() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.version
}
