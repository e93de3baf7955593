// Package farmtest starts a real framefleet coordinator and agent, each a separate OS process
// from the repository's Python installation, for interop tests of the Go client.
package farmtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long the coordinator may take to print its address.
const ReadyTimeout = 30 * time.Second

// Farm is a running coordinator (at Address, over TLS with client tokens, as on a network)
// with one agent that has a certificate; outputs go under Out. Clients trust CA and send
// Token (a submit token of tenant "go").
type Farm struct {
	Address string
	Out     string
	Root    string
	CA      string
	Token   string
	procs   []*process
}

// framefleet runs a short framefleet command and returns its stdout.
func framefleet(t testing.TB, python string, args ...string) string {
	t.Helper()
	out, err := exec.Command(python, append([]string{"-m", "framefleet"}, args...)...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("framefleet %v: %v\n%s", args, err, exit.Stderr)
		}
		t.Fatalf("framefleet %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// moduleRoot is clients/go: the nearest directory above the test's working directory (its
// package directory) that has a go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// Python is the interpreter with framefleet installed: $FRAMEFLEET_PYTHON, else the
// repository's ../../.venv/bin/python relative to the module. Without the default one the test
// is skipped, with the reason; a FRAMEFLEET_PYTHON that does not exist fails it (CI sets it).
func Python(t testing.TB) string {
	t.Helper()
	if python := os.Getenv("FRAMEFLEET_PYTHON"); python != "" {
		if _, err := os.Stat(python); err != nil {
			t.Fatalf("FRAMEFLEET_PYTHON=%s: %v", python, err)
		}
		return python
	}
	python := filepath.Join(moduleRoot(), "..", "..", ".venv", "bin", "python")
	if _, err := os.Stat(python); err != nil {
		t.Skipf("no Python with framefleet at %s: run `make setup` at the repository root, or "+
			"set FRAMEFLEET_PYTHON, to test against a live coordinator and agent", python)
	}
	return python
}

// Start starts a coordinator on a free loopback port with a SQLite store in a temporary
// directory, and one agent with one slot; both are stopped when the test ends, and their logs
// are printed if it failed.
func Start(t testing.TB) *Farm {
	t.Helper()
	python := Python(t)
	root := t.TempDir()
	f := &Farm{Root: root, Out: filepath.Join(root, "out")}
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			t.Log(f.Logs())
		}
	})

	certs := filepath.Join(root, "certs")
	framefleet(t, python, "certs", "ca", "--dir", certs)
	framefleet(t, python, "certs", "server", "coordinator", "--host", "127.0.0.1", "--dir", certs)
	framefleet(t, python, "certs", "agent", "go-interop-agent", "--dir", certs)
	tokens := filepath.Join(root, "tokens.json")
	f.Token = framefleet(t, python, "token", "add", "go", "--role", "submit", "--tokens", tokens)
	f.CA = filepath.Join(certs, "ca.pem")

	coordinator, stdout := f.spawn(t, "coordinator", true, python, "-m", "framefleet", "coordinator",
		"--listen", "127.0.0.1:0", "--store", "sqlite:///"+filepath.Join(root, "jobs.db"),
		"--out", f.Out, "--tls-cert", filepath.Join(certs, "coordinator.pem"),
		"--tls-key", filepath.Join(certs, "coordinator.key"), "--tokens", tokens,
		"--agent-ca", f.CA, "--agent-listen", "127.0.0.1:0")
	lines := make(chan string, 2)
	go func() {
		reader := bufio.NewReader(stdout)
		for range 2 {
			line, _ := reader.ReadString('\n')
			lines <- line
		}
		_, _ = io.Copy(io.Discard, reader) // never let a full pipe block the coordinator
	}()
	address := func(marker string) string {
		select {
		case line := <-lines:
			i := strings.Index(line, marker)
			if i < 0 {
				t.Fatalf("coordinator did not start: %q\n%s", line, f.Logs())
			}
			return strings.TrimSpace(line[i+len(marker):])
		case <-coordinator.done:
			t.Fatalf("coordinator exited before listening\n%s", f.Logs())
		case <-time.After(ReadyTimeout):
			t.Fatalf("coordinator printed no address in %s\n%s", ReadyTimeout, f.Logs())
		}
		return ""
	}
	f.Address = address("listening on ")
	agents := address("agents on ")

	f.spawn(t, "agent", false, python, "-m", "framefleet", "agent", "--coordinator", agents,
		"--tls-ca", f.CA, "--tls-cert", filepath.Join(certs, "go-interop-agent.pem"),
		"--tls-key", filepath.Join(certs, "go-interop-agent.key"), "--slots", "1")
	return f
}

func (f *Farm) spawn(t testing.TB, name string, pipe bool, args ...string) (*process, io.Reader) {
	t.Helper()
	log := filepath.Join(f.Root, name+".log")
	logFile, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	cmd.Stderr = logFile
	var stdout io.Reader
	if pipe {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	} else {
		cmd.Stdout = logFile
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	f.procs = append(f.procs, p)
	return p, stdout
}

// stop sends SIGTERM to every process, newest first (agents drain before the coordinator
// goes), and kills any still running after 15 seconds.
func (f *Farm) stop() {
	for i := len(f.procs) - 1; i >= 0; i-- {
		p := f.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// Logs is the tail of every process's log.
func (f *Farm) Logs() string {
	var b strings.Builder
	for _, p := range f.procs {
		data, _ := os.ReadFile(p.log)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", p.name, data)
	}
	return b.String()
}
