package combine

import (
	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// matrix is a dense float64 matrix in row-major order.
type matrix struct {
	rows, cols int
	data       []float64
}

func newMatrix(rows, cols int) matrix {
	return matrix{rows: rows, cols: cols, data: make([]float64, rows*cols)}
}

func (m matrix) at(i, j int) float64     { return m.data[i*m.cols+j] }
func (m matrix) set(i, j int, v float64) { m.data[i*m.cols+j] = v }

// fromTensor widens a 2-D adapter tensor.
func fromTensor(t *adapter.Tensor) matrix {
	m := newMatrix(int(t.Shape[0]), int(t.Shape[1]))
	for i, v := range t.Data {
		m.data[i] = float64(v)
	}
	return m
}

// tensor narrows m to an adapter tensor stored as d, rounding each value
// to d in memory, as the file will hold it.
func (m matrix) tensor(d dtype.Type) *adapter.Tensor {
	data := make([]float32, len(m.data))
	for i, v := range m.data {
		data[i] = half.RoundTo(d, float32(v))
	}
	t := adapter.NewTensor([]int64{int64(m.rows), int64(m.cols)}, data)
	t.DType = d
	return t
}

// transpose returns mᵀ.
func (m matrix) transpose() matrix {
	t := newMatrix(m.cols, m.rows)
	for i := 0; i < m.rows; i++ {
		for j := 0; j < m.cols; j++ {
			t.data[j*t.cols+i] = m.data[i*m.cols+j]
		}
	}
	return t
}

// mul returns m·n.
func (m matrix) mul(n matrix) matrix {
	out := newMatrix(m.rows, n.cols)
	for i := 0; i < m.rows; i++ {
		row := out.data[i*out.cols : (i+1)*out.cols]
		for k := 0; k < m.cols; k++ {
			a := m.data[i*m.cols+k]
			if a == 0 {
				continue
			}
			nrow := n.data[k*n.cols : (k+1)*n.cols]
			for j, b := range nrow {
				row[j] += a * b
			}
		}
	}
	return out
}
