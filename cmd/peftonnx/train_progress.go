package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/peftonnx/peftonnx/train"
)

// trainProgress draws a one-line progress bar on a terminal: the step, a bar,
// the loss, the learning rate and the time per step. It draws nothing when
// the writer is not a terminal.
type trainProgress struct {
	w     io.Writer
	on    bool
	start time.Time
	first int // the step the bar started at, less one
	drawn bool
}

// newTrainProgress returns a progress bar on w, active when w is a terminal.
func newTrainProgress(w io.Writer) *trainProgress {
	p := &trainProgress{w: w, start: time.Now(), first: -1}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

// update redraws the bar after step r.
func (p *trainProgress) update(r train.StepResult) {
	if !p.on {
		return
	}
	if p.first < 0 {
		p.first, p.start = r.Step-1, time.Now()
	}
	fmt.Fprintf(p.w, "\r\033[K%s", trainProgressLine(r, time.Since(p.start), r.Step-p.first))
	p.drawn = true
}

// done ends the bar's line.
func (p *trainProgress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// trainProgressLine formats the bar for step r, after ran steps in elapsed.
func trainProgressLine(r train.StepResult, elapsed time.Duration, ran int) string {
	const width = 24
	filled := 0
	if r.Total > 0 {
		filled = min(width, width*r.Step/r.Total)
	}
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	per := elapsed / time.Duration(max(1, ran))
	eta := per * time.Duration(max(0, r.Total-r.Step))
	return fmt.Sprintf("step %d/%d [%s] loss %.4f lr %.2e %s/step eta %s",
		r.Step, r.Total, bar, r.Loss, r.LR, per.Round(time.Millisecond), eta.Round(time.Second))
}
