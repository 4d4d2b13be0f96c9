// Package procmem reads the process's own memory figures from Linux's
// /proc/self/status: the peak resident set (VmHWM) that "peftonnx train"
// reports and the benchmark compares, and the current one split into
// anonymous memory and mapped files. Elsewhere the figures are not
// available, and the functions say so.
package procmem
