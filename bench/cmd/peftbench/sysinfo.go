package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peftonnx/peftonnx/internal/procmem"
)

// peakRSSMB returns the process's peak resident set size in MiB: VmHWM
// of /proc/self/status, the figure torch_llama.py reports too. (getrusage's
// ru_maxrss would not do: Linux carries it across execve, so a worker
// would inherit the driver's peak.)
func peakRSSMB() float64 {
	return procStatusMB("VmHWM:")
}

// procStatusMB returns a size field of /proc/self/status, such as
// "VmHWM:", in MiB, or 0.
func procStatusMB(field string) float64 {
	b, _ := procmem.Field(strings.TrimSuffix(field, ":"))
	return float64(b) / (1 << 20)
}

// cpuTime returns the user and system time of every thread of the
// process, ONNX Runtime's included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAvg returns the one-minute load average, or 0.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// memAvailableMB returns MemAvailable from /proc/meminfo in MiB, or 0.
func memAvailableMB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// rssMB returns the current resident set size in MiB, from
// /proc/self/statm.
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseFloat(f[1], 64)
	return pages * float64(os.Getpagesize()) / (1 << 20)
}

// Machine describes the computer a report was measured on.
type Machine struct {
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	MemGiB  int    `json:"mem_gib"`
	Kernel  string `json:"kernel"`
	OS      string `json:"os"`
	Go      string `json:"go"`
	ORT     string `json:"onnxruntime"`
	Torch   string `json:"torch"`
	BLAS    string `json:"torch_blas"`
	Threads int    `json:"threads"`
}

// describeMachine fills what the system tells about itself; the library
// versions come from the workers.
func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = int(kb/(1<<20) + 0.5)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}
