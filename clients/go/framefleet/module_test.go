package framefleet_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A program in a module of its own, outside this repository, imports the client by its module
// path, as `go get github.com/framefleet/framefleet/clients/go@clients/go/vX.Y.Z` users do (the
// replace directive stands in for the tag's download).
func TestImportableAtItsModulePath(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	modRoot, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	here := filepath.Dir(strings.TrimSpace(string(modRoot)))
	consumer := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/consumer\n\ngo 1.26.0\n\n" +
			"require github.com/framefleet/framefleet/clients/go v0.2.0\n\n" +
			"replace github.com/framefleet/framefleet/clients/go => " + here + "\n",
		"main.go": `package main

import (
	"fmt"

	"github.com/framefleet/framefleet/clients/go/framefleet"
	pb "github.com/framefleet/framefleet/clients/go/framefleetv1"
)

func main() {
	client, err := framefleet.Dial("127.0.0.1:7070")
	if err != nil {
		panic(err)
	}
	defer client.Close()
	fmt.Println(pb.JobState_JOB_STATE_SUCCEEDED)
}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(consumer, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = consumer
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
