package train

import (
	"math"
	"strings"
	"testing"
)

func TestSchedule(t *testing.T) {
	tests := []struct {
		kind          string
		warmup, total int
		step          int
		want          float64 // factor of the base rate
	}{
		{"constant", 0, 10, 0, 1},
		{"constant", 0, 10, 9, 1},
		{"constant", 4, 10, 0, 0}, // becomes constant_with_warmup
		{"constant", 4, 10, 1, 0.25},
		{"constant", 4, 10, 4, 1},
		{"constant_with_warmup", 2, 10, 1, 0.5},
		{"linear", 0, 10, 0, 1},
		{"linear", 0, 10, 5, 0.5},
		{"linear", 0, 10, 9, 0.1},
		{"linear", 0, 10, 10, 0},
		{"linear", 0, 10, 12, 0},
		{"linear", 2, 10, 0, 0},
		{"linear", 2, 10, 1, 0.5},
		{"linear", 2, 10, 2, 1},
		{"linear", 2, 10, 6, 0.5},
		{"linear", 2, 10, 9, 0.125},
		{"cosine", 0, 10, 0, 1},
		{"cosine", 0, 10, 5, 0.5},
		{"cosine", 0, 8, 2, 0.5 * (1 + math.Sqrt2/2)},
		{"cosine", 0, 10, 10, 0},
		{"cosine", 3, 13, 1, 1.0 / 3},
		{"cosine", 3, 13, 3, 1},
		{"cosine", 3, 13, 8, 0.5},
		{"cosine", 3, 13, 13, 0},
		{"Linear", 0, 0, 0, 0}, // total 0: HF's max(1, ·) guards the division
	}
	for i, tt := range tests {
		s, err := NewSchedule(tt.kind, 2e-4, tt.warmup, tt.total)
		if err != nil {
			t.Fatal(err)
		}
		got := s.Factor(tt.step)
		if math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("unexpected result for test %d (%s warmup %d total %d step %d): got %v want %v", i, tt.kind, tt.warmup, tt.total, tt.step, got, tt.want)
		}
		if lr := s.LR(tt.step); math.Abs(lr-2e-4*tt.want) > 1e-18 {
			t.Errorf("test %d: LR got %v want %v", i, lr, 2e-4*tt.want)
		}
	}
}

func TestScheduleErrors(t *testing.T) {
	tests := []struct {
		kind          string
		lr            float64
		warmup, total int
		want          string
	}{
		{"polynomial", 1e-3, 0, 10, `unknown schedule "polynomial"`},
		{"linear", -1, 0, 10, "learning rate -1"},
		{"linear", math.NaN(), 0, 10, "learning rate NaN"},
		{"linear", 1e-3, -1, 10, "warmup of -1"},
		{"cosine", 1e-3, 0, -5, "over -5 steps"},
	}
	for i, tt := range tests {
		_, err := NewSchedule(tt.kind, tt.lr, tt.warmup, tt.total)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("test %d: got error %v, want one containing %q", i, err, tt.want)
		}
	}
}
