package runtime

import (
	"os"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// LogLevelEnv is the environment variable that sets how much ONNX Runtime
// itself prints to standard error: verbose, info, warning, error or fatal.
// The default is fatal: every ONNX Runtime error reaches the caller as an
// error of this package, and a command prints it once, as one line, so
// ONNX Runtime's own copy of it (in colour, often three times) is left
// out. Set it to warning or info to see what ONNX Runtime says besides.
const LogLevelEnv = "PEFTONNX_ORT_LOG"

// logLevels are the values LogLevelEnv takes.
var logLevels = map[string]ort.LoggingLevel{
	"verbose": ort.LoggingLevelVerbose,
	"info":    ort.LoggingLevelInfo,
	"warning": ort.LoggingLevelWarning,
	"error":   ort.LoggingLevelError,
	"fatal":   ort.LoggingLevelFatal,
}

// logLevel returns the ONNX Runtime log level that LogLevelEnv sets.
func logLevel() (ort.LoggingLevel, error) {
	v := strings.ToLower(strings.TrimSpace(os.Getenv(LogLevelEnv)))
	if v == "" {
		return ort.LoggingLevelFatal, nil
	}
	l, ok := logLevels[v]
	if !ok {
		return 0, errorf("%s=%q: want verbose, info, warning, error or fatal", LogLevelEnv, v)
	}
	return l, nil
}

// envLogOption is the environment option for level.
func envLogOption(level ort.LoggingLevel) ort.EnvironmentOption {
	switch level {
	case ort.LoggingLevelVerbose:
		return ort.WithLogLevelVerbose()
	case ort.LoggingLevelInfo:
		return ort.WithLogLevelInfo()
	case ort.LoggingLevelWarning:
		return ort.WithLogLevelWarning()
	case ort.LoggingLevelError:
		return ort.WithLogLevelError()
	}
	return ort.WithLogLevelFatal()
}
