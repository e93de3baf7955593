package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/framefleet/framefleet/clients/go/internal/farmtest"
)

// The example command against a live coordinator and agent: a template file with an asset
// beside it, parameters from the command line, progress on stdout, then the output URL.
func TestSubmitExample(t *testing.T) {
	farm := farmtest.Start(t)
	dir := t.TempDir()
	html := `<!doctype html><html><head><link rel="stylesheet" href="style.css"></head>
<body><div id="name"></div><script>
framefleet.onParams(p => { document.getElementById("name").textContent = p.name + " " + p.count; });
</script></body></html>`
	if err := os.WriteFile(filepath.Join(dir, "card.html"), []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	css := "body { margin: 0; background: #123; color: #fff; font: 10px sans-serif }"
	if err := os.WriteFile(filepath.Join(dir, "style.css"), []byte(css), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	trust := []string{"-tls-ca", farm.CA, "-token", farm.Token}
	code := run(ctx, append(trust, "-coordinator", farm.Address, "-param", "name=Ada", "-param", "count=12",
		"-width", "64", "-height", "64", "-fps", "10", "-frames", "5", filepath.Join(dir, "card.html")),
		&stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if !strings.HasPrefix(lines[0], "submitted ") {
		t.Fatalf("first line %q", lines[0])
	}
	if !strings.Contains(stdout.String(), "succeeded 5/5 frames") {
		t.Fatalf("no final progress line:\n%s", stdout.String())
	}
	u, err := url.Parse(lines[len(lines)-1])
	if err != nil || u.Scheme != "file" {
		t.Fatalf("last line %q is not a file:// URL", lines[len(lines)-1])
	}
	if info, err := os.Stat(u.Path); err != nil || info.Size() == 0 {
		t.Fatalf("output %s: %v", u.Path, err)
	}

	// Bad input is refused before anything runs.
	code = run(ctx, append(trust, "-coordinator", farm.Address, "-width", "63", "-frames", "5",
		filepath.Join(dir, "card.html")), &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "INVALID_JOB") {
		t.Fatalf("odd width: exit %d, stderr %q", code, stderr.String())
	}
}
