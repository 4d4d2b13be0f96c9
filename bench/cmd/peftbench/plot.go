package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"

	"github.com/peftonnx/peftonnx/internal/raster"
)

// The plot is drawn with the standard library alone, through package
// raster: lines, markers and its 5×7 bitmap font.

var (
	colPeft  = color.RGBA{0x1f, 0x77, 0xb4, 0xff} // blue
	colTorch = color.RGBA{0xff, 0x7f, 0x0e, 0xff} // orange
	colAxis  = color.RGBA{0x33, 0x33, 0x33, 0xff}
	colGrid  = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colText  = color.RGBA{0x11, 0x11, 0x11, 0xff}
)

// series is one line of a panel: y against x, with a label per point for
// the x axis.
type series struct {
	name  string
	col   color.RGBA
	xs    []float64
	ys    []float64
	ticks []string
}

// panel is one chart: a title, axis captions, and its lines. X values are
// placed on a log scale, and Y values too where logY is set.
type panel struct {
	title, xlabel, ylabel string
	logY                  bool
	lines                 []series
}

// writeScalePlot draws step time and peak memory against sequence length
// and against model size, peftonnx beside PyTorch, into a PNG at path.
func writeScalePlot(path string, seqs, sizes []*Comparison) error {
	var panels []panel
	if len(seqs) > 0 {
		panels = append(panels,
			sweepPanel("STEP TIME VS SEQUENCE LENGTH ("+strings.ToUpper(seqs[0].Size)+")", "SEQUENCE LENGTH", "MS", seqs, false, stepMS, seqX),
			sweepPanel("PEAK RSS VS SEQUENCE LENGTH", "SEQUENCE LENGTH", "MIB", seqs, false, peakMB, seqX))
	}
	if len(sizes) > 0 {
		panels = append(panels,
			sweepPanel("STEP TIME VS MODEL SIZE (SEQ 128)", "PARAMETERS", "MS", sizes, true, stepMS, paramX),
			sweepPanel("PEAK RSS VS MODEL SIZE", "PARAMETERS", "MIB", sizes, true, peakMB, paramX))
	}
	if len(panels) == 0 {
		return nil
	}
	b, err := renderPanels(panels)
	if err != nil {
		return err
	}
	return writeFile(path, b)
}

type pick func(c *Comparison, torch bool) float64

func stepMS(c *Comparison, torch bool) float64 {
	if torch {
		return c.Torch.MedianMS
	}
	return c.Peft.MedianMS
}

func peakMB(c *Comparison, torch bool) float64 {
	if torch {
		return c.Torch.PeakRSSMB
	}
	return c.Peft.PeakRSSMB
}

func seqX(c *Comparison) (float64, string) { return float64(c.Seq), fmt.Sprint(c.Seq) }

func paramX(c *Comparison) (float64, string) {
	return float64(c.Params), strings.ToUpper(human(c.Params))
}

// sweepPanel makes a panel with one line per side.
func sweepPanel(title, xl, yl string, cs []*Comparison, logY bool, y pick, x func(*Comparison) (float64, string)) panel {
	p := panel{title: title, xlabel: xl, ylabel: yl, logY: logY}
	for _, torch := range []bool{false, true} {
		s := series{name: "PEFTONNX", col: colPeft}
		if torch {
			s = series{name: "PYTORCH", col: colTorch}
		}
		for _, c := range cs {
			xv, label := x(c)
			s.xs = append(s.xs, xv)
			s.ys = append(s.ys, y(c, torch))
			s.ticks = append(s.ticks, label)
		}
		p.lines = append(p.lines, s)
	}
	return p
}

const (
	panelW, panelH = 600, 400
	marginL        = 80
	marginR        = 20
	marginT        = 40
	marginB        = 60
)

// renderPanels lays the panels out two per row and encodes the PNG.
func renderPanels(panels []panel) ([]byte, error) {
	cols := min(2, len(panels))
	rows := (len(panels) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, cols*panelW, rows*panelH))
	raster.Fill(img, img.Bounds(), color.RGBA{0xff, 0xff, 0xff, 0xff})
	for i, p := range panels {
		x0, y0 := (i%cols)*panelW, (i/cols)*panelH
		drawPanel(img, x0, y0, p)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// drawPanel draws p with its top-left corner at (x0, y0).
func drawPanel(img *image.RGBA, x0, y0 int, p panel) {
	left, top := x0+marginL, y0+marginT
	right, bottom := x0+panelW-marginR, y0+panelH-marginB
	raster.Text(img, x0+marginL, y0+12, p.title, colText, 2)

	// Ranges: X on a log scale over the points; Y from 0 (linear) or a
	// decade below the smallest value (log) to a little over the largest.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range p.lines {
		for i := range s.xs {
			xmin, xmax = math.Min(xmin, s.xs[i]), math.Max(xmax, s.xs[i])
			if s.ys[i] > 0 {
				ymin, ymax = math.Min(ymin, s.ys[i]), math.Max(ymax, s.ys[i])
			}
		}
	}
	if math.IsInf(xmin, 0) || math.IsInf(ymin, 0) {
		return
	}
	lx := func(v float64) float64 { return math.Log(v) }
	if xmax == xmin {
		xmin, xmax = xmin/2, xmax*2
	}
	var ylo, yhi float64
	var ty func(float64) float64
	if p.logY {
		ylo = math.Pow(10, math.Floor(math.Log10(ymin)))
		yhi = math.Pow(10, math.Ceil(math.Log10(ymax)))
		if yhi == ylo {
			yhi *= 10
		}
		ty = func(v float64) float64 {
			return (math.Log10(v) - math.Log10(ylo)) / (math.Log10(yhi) - math.Log10(ylo))
		}
	} else {
		ylo, yhi = 0, niceCeil(ymax*1.1)
		ty = func(v float64) float64 { return (v - ylo) / (yhi - ylo) }
	}
	px := func(v float64) int {
		pad := 0.06
		f := (lx(v) - lx(xmin)) / (lx(xmax) - lx(xmin))
		return left + int(math.Round((pad+f*(1-2*pad))*float64(right-left)))
	}
	py := func(v float64) int { return bottom - int(math.Round(ty(v)*float64(bottom-top))) }

	// Grid and Y ticks.
	var yticks []float64
	if p.logY {
		for v := ylo; v <= yhi*1.0001; v *= 10 {
			yticks = append(yticks, v)
		}
	} else {
		for i := 0; i <= 5; i++ {
			yticks = append(yticks, ylo+(yhi-ylo)*float64(i)/5)
		}
	}
	for _, v := range yticks {
		y := py(v)
		raster.HLine(img, left, right, y, colGrid)
		label := formatTick(v)
		raster.Text(img, left-8-raster.TextWidth(label, 1), y-3, label, colText, 1)
	}
	// X ticks, at the points of the first line.
	if len(p.lines) > 0 {
		for i, v := range p.lines[0].xs {
			x := px(v)
			raster.VLine(img, x, top, bottom, colGrid)
			label := p.lines[0].ticks[i]
			raster.Text(img, x-raster.TextWidth(label, 1)/2, bottom+8, label, colText, 1)
		}
	}
	// Axes and captions.
	raster.HLine(img, left, right, bottom, colAxis)
	raster.VLine(img, left, top, bottom, colAxis)
	raster.Text(img, (left+right)/2-raster.TextWidth(p.xlabel, 1)/2, bottom+28, p.xlabel, colText, 1)
	raster.Text(img, x0+8, top-14, p.ylabel, colText, 1)

	// Lines, markers and the legend.
	for li, s := range p.lines {
		for i := range s.xs {
			if s.ys[i] <= 0 {
				continue
			}
			x, y := px(s.xs[i]), py(s.ys[i])
			if i > 0 && s.ys[i-1] > 0 {
				raster.Line(img, px(s.xs[i-1]), py(s.ys[i-1]), x, y, 2, s.col)
			}
			raster.Fill(img, image.Rect(x-3, y-3, x+4, y+4), s.col)
		}
		lxp, lyp := left+12, top+8+li*16
		raster.Fill(img, image.Rect(lxp, lyp, lxp+18, lyp+8), s.col)
		raster.Text(img, lxp+24, lyp+1, s.name, colText, 1)
	}
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// formatTick prints an axis value compactly: 1500 → 1500, 2.5 → 2.5,
// 20000 → 20K.
func formatTick(v float64) string {
	switch {
	case v >= 1e6:
		return trimZeros(fmt.Sprintf("%.1fM", v/1e6))
	case v >= 1e4:
		return trimZeros(fmt.Sprintf("%.1fK", v/1e3))
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	}
	return trimZeros(fmt.Sprintf("%.2f", v))
}

func trimZeros(s string) string {
	unit := ""
	if n := len(s); n > 0 && (s[n-1] == 'K' || s[n-1] == 'M') {
		s, unit = s[:n-1], s[n-1:]
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + unit
}
