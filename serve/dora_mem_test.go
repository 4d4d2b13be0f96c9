package serve_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/servetest"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
)

// TestDoRAEngineMemory logs the resident memory of a DoRA engine, without
// an adapter and with one DoRA adapter loaded (of a plain engine with
// ",plain"), each in a process of its own:
//
//	PEFTONNX_SERVE_MEM=gen:DIR go test ./serve -run TestDoRAEngineMemory  # LlamaBase, external data, and the DoRA adapter into DIR
//	PEFTONNX_SERVE_MEM=DIR[,plain] go test ./serve -run TestDoRAEngineMemory -v
func TestDoRAEngineMemory(t *testing.T) {
	env := os.Getenv("PEFTONNX_SERVE_MEM")
	if env == "" {
		t.Skip("PEFTONNX_SERVE_MEM unset")
	}
	if dir, ok := strings.CutPrefix(env, "gen:"); ok {
		f := servetest.New(t, models.LlamaBase(), "")
		m, err := graph.Load(f.Base)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.Save(filepath.Join(dir, "model.onnx"), graph.SaveOptions{ExternalData: true}); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-r", f.DoRA, filepath.Join(dir, "dora")).CombinedOutput(); err != nil {
			t.Fatal(string(out), err)
		}
		return
	}
	servetest.RequireORT(t)
	mem := func(what string) {
		runtime.GC()
		debug.FreeOSMemory()
		fh, err := os.Open("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		var parts []string
		s := bufio.NewScanner(fh)
		for s.Scan() {
			for _, k := range []string{"VmRSS", "RssAnon", "RssFile", "VmHWM"} {
				if v, ok := strings.CutPrefix(s.Text(), k+":"); ok {
					parts = append(parts, k+" "+strings.TrimSpace(v))
				}
			}
		}
		t.Logf("%s: %s", what, strings.Join(parts, ", "))
	}
	mem("start")
	dir, plain := strings.CutSuffix(env, ",plain")
	e, err := serve.New(filepath.Join(dir, "model.onnx"), serve.Options{DoRA: !plain})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mem("no adapter")
	if plain {
		return
	}
	if _, err := e.Load("dora", filepath.Join(dir, "dora"), false); err != nil {
		t.Fatal(err)
	}
	mem("one DoRA adapter")
}
