package option

import (
	"errors"
	"testing"
)

type settings struct{ seen []int }

type setting func(*settings) error

func TestApply(t *testing.T) {
	add := func(i int) setting {
		return func(s *settings) error { s.seen = append(s.seen, i); return nil }
	}
	stop := errors.New("stop")
	fail := func(s *settings) error { return stop }
	tests := []struct {
		opts    []setting
		want    []int
		wantErr error
	}{
		{nil, nil, nil},
		{[]setting{add(1), nil, add(2)}, []int{1, 2}, nil},
		{[]setting{add(1), fail, add(2)}, []int{1}, stop},
	}
	for i, tc := range tests {
		var s settings
		err := Apply(&s, tc.opts)
		if !errors.Is(err, tc.wantErr) || len(s.seen) != len(tc.want) {
			t.Errorf("unexpected result for test %d: got %v, %v want %v, %v", i, s.seen, err, tc.want, tc.wantErr)
			continue
		}
		for j := range tc.want {
			if s.seen[j] != tc.want[j] {
				t.Errorf("unexpected result for test %d: got %v want %v", i, s.seen, tc.want)
				break
			}
		}
	}
}
