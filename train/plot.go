package train

import (
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strconv"

	"github.com/peftonnx/peftonnx/internal/raster"
)

// WriteLossPlot draws the loss curve of records as a PNG of the given size
// (0: 640×400): the training loss per logged step as a line, evaluation
// losses as squares, on axes with five labelled levels and the first and
// last step marked. Non-finite losses are left out. It needs no font
// files: text is drawn from package raster's bitmap font.
func WriteLossPlot(w io.Writer, records []LogRecord, width, height int) error {
	if width <= 0 || height <= 0 {
		width, height = 640, 400
	}
	if width < 160 || height < 120 {
		return errorf("loss plot: %d×%d is too small (want at least 160×120)", width, height)
	}
	var train, eval []point
	for _, r := range records {
		if r.Loss != nil && isFinite(*r.Loss) {
			train = append(train, point{float64(r.Step), *r.Loss})
		}
		if r.EvalLoss != nil && isFinite(*r.EvalLoss) {
			eval = append(eval, point{float64(r.Step), *r.EvalLoss})
		}
	}
	p := newPlot(width, height, append(append([]point(nil), train...), eval...))
	p.axes()
	p.line(train, trainColor)
	for _, e := range eval {
		x, y := p.at(e)
		raster.Box(p.img, x-3, y-3, x+3, y+3, evalColor)
	}
	p.legend(len(train) > 0, len(eval) > 0)
	if err := png.Encode(w, p.img); err != nil {
		return errorf("loss plot: %w", err)
	}
	return nil
}

type point struct{ x, y float64 }

var (
	background = color.RGBA{255, 255, 255, 255}
	axisColor  = color.RGBA{40, 40, 40, 255}
	gridColor  = color.RGBA{225, 225, 225, 255}
	trainColor = color.RGBA{31, 119, 180, 255}
	evalColor  = color.RGBA{255, 127, 14, 255}
)

// plot maps data to pixels inside margins.
type plot struct {
	img                   *image.RGBA
	left, right, top, bot int // plot area, in pixels
	x0, x1, y0, y1        float64
	steps                 [2]float64
	empty                 bool
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func newPlot(width, height int, pts []point) *plot {
	p := &plot{img: raster.New(width, height, background), left: 64, right: width - 16, top: 28, bot: height - 28, empty: len(pts) == 0}
	if p.empty {
		p.x0, p.x1, p.y0, p.y1 = 0, 1, 0, 1
		return p
	}
	p.x0, p.x1 = pts[0].x, pts[0].x
	p.y0, p.y1 = pts[0].y, pts[0].y
	for _, q := range pts {
		p.x0, p.x1 = math.Min(p.x0, q.x), math.Max(p.x1, q.x)
		p.y0, p.y1 = math.Min(p.y0, q.y), math.Max(p.y1, q.y)
	}
	p.steps = [2]float64{p.x0, p.x1}
	if p.x1 == p.x0 {
		p.x0, p.x1 = p.x0-1, p.x1+1
	}
	pad := 0.05 * (p.y1 - p.y0)
	if pad == 0 {
		pad = math.Max(0.5, 0.1*math.Abs(p.y0))
	}
	p.y0, p.y1 = p.y0-pad, p.y1+pad
	return p
}

// at returns the pixel of a data point.
func (p *plot) at(q point) (int, int) {
	x := p.left + int(math.Round((q.x-p.x0)/(p.x1-p.x0)*float64(p.right-p.left)))
	y := p.bot - int(math.Round((q.y-p.y0)/(p.y1-p.y0)*float64(p.bot-p.top)))
	return x, y
}

// axes draws the grid, the axes and their labels.
func (p *plot) axes() {
	const levels = 5
	for i := range levels {
		v := p.y0 + (p.y1-p.y0)*float64(i)/(levels-1)
		_, y := p.at(point{p.x0, v})
		raster.HLine(p.img, p.left+1, p.right, y, gridColor)
		raster.HLine(p.img, p.left-4, p.left, y, axisColor)
		label := strconv.FormatFloat(v, 'g', 3, 64)
		if p.empty {
			label = ""
		}
		p.text(p.left-8-textWidth(label), y-raster.GlyphHeight/2, label, axisColor)
	}
	raster.VLine(p.img, p.left, p.top, p.bot, axisColor)
	raster.HLine(p.img, p.left, p.right, p.bot, axisColor)
	p.text(8, p.top-20, "loss", axisColor)
	if p.empty {
		return
	}
	for _, s := range p.steps {
		x, _ := p.at(point{s, p.y0})
		raster.VLine(p.img, x, p.bot, p.bot+4, axisColor)
		label := strconv.FormatFloat(s, 'f', 0, 64)
		p.text(x-textWidth(label)/2, p.bot+8, label, axisColor)
	}
	p.text((p.left+p.right-textWidth("step"))/2, p.bot+8, "step", axisColor)
}

// legend names the series that are drawn.
func (p *plot) legend(train, eval bool) {
	x := p.right - 120
	if train {
		raster.HLine(p.img, x, x+20, p.top-12, trainColor)
		raster.HLine(p.img, x, x+20, p.top-11, trainColor)
		p.text(x+26, p.top-16, "train", axisColor)
	}
	if eval {
		raster.Box(p.img, x+70, p.top-15, x+76, p.top-9, evalColor)
		p.text(x+82, p.top-16, "eval", axisColor)
	}
}

// line joins pts with a line two pixels wide; a single point is a dot.
func (p *plot) line(pts []point, c color.RGBA) {
	if len(pts) == 1 {
		x, y := p.at(pts[0])
		raster.Box(p.img, x-2, y-2, x+2, y+2, c)
		return
	}
	for i := 1; i < len(pts); i++ {
		x0, y0 := p.at(pts[i-1])
		x1, y1 := p.at(pts[i])
		raster.Line(p.img, x0, y0, x1, y1, 2, c)
	}
}

// text draws s at scale 1 with its top left corner at (x, y).
func (p *plot) text(x, y int, s string, c color.RGBA) {
	raster.Text(p.img, x, y, s, c, 1)
}

// textWidth returns the width of s as text draws it.
func textWidth(s string) int { return raster.TextWidth(s, 1) }
