package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// cmdMemory shows where the peftonnx side's memory goes: it sets one run
// up in this process, as the worker does, and prints the resident memory
// after the session is open and after each step, split into anonymous
// memory (ONNX Runtime's arena, pre-packed weights, Go's heap) and mapped
// files (the weights that ONNX Runtime reads from the model's external
// data file). PEFTBENCH_ORT_CONFIG applies as in the worker.
func cmdMemory(args []string) error {
	fs, c, t := trainCommand("memory", 4)
	which := registerTrainMode(fs)
	only := fs.String("mode", "", "run this worker mode instead (one of "+strings.Join(workerModes, ", ")+"), such as a forward pass")
	dora := fs.Bool("dora", false, "DoRA (use_dora) on the LoRA layers: the LoRA step, or with -int4 the QLoRA step")
	fs.Parse(args)
	if c.threads <= 0 {
		return fmt.Errorf("peftbench: -threads %d: want > 0", c.threads)
	}
	mode, _ := which()
	if *dora {
		switch mode {
		case modeTrainLoRA:
			mode = modeTrainDoRA
		case modeTrainQLoRA:
			mode = modeTrainQDoRA
		default:
			return fmt.Errorf("peftbench: -dora runs the LoRA or the QLoRA (-int4) step, not %s", mode)
		}
	}
	if *only != "" {
		if !slices.Contains(workerModes, *only) {
			return fmt.Errorf("peftbench: -mode %q: want one of %s", *only, strings.Join(workerModes, ", "))
		}
		mode = *only
	}
	dir, err := exportFor(c.cache(), t.size, t.batch, t.seq, 1000, mode)
	if err != nil {
		return err
	}
	fmt.Printf("%s, %s model, batch %d, seq %d, %d threads\n", mode, t.size, t.batch, t.seq, c.threads)
	fmt.Printf("%-22s %10s %10s %10s %10s\n", "", "peak MiB", "now MiB", "anon MiB", "file MiB")
	report := func(what string) {
		fmt.Printf("%-22s %10.0f %10.0f %10.0f %10.0f\n", what,
			procStatusMB("VmHWM:"), procStatusMB("VmRSS:"), procStatusMB("RssAnon:"), procStatusMB("RssFile:"))
	}
	report("start")
	r, err := openGoRun(dir, mode, 0, c.threads)
	if err != nil {
		return err
	}
	defer r.Close()
	report("session open")
	for i := range t.warmup + t.steps {
		t0 := time.Now()
		if _, _, err := r.Step(); err != nil {
			return err
		}
		report(fmt.Sprintf("step %d (%.0f ms)", i+1, float64(time.Since(t0).Microseconds())/1e3))
	}
	return nil
}
