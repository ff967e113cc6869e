package registry_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEGoSnippetsCompile compiles every Go code block of the README
// against this checkout, in a scratch module: a snippet that uses an
// undefined name, ignores a returned error into nothing, or calls an API
// that no longer exists fails here. Each block is the body of a function
// given the few names the README's prose introduces (ctx, t, img, srv,
// ref, dst) and returning an error; what a block declares and does not
// use is used for it. The blocks are compiled, not run: they name public
// registries.
func TestREADMEGoSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a scratch module")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 4 {
		t.Fatalf("found %d Go blocks in the README", len(blocks))
	}
	declared := regexp.MustCompile(`(?m)^\s*([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*:=`)
	var src strings.Builder
	src.WriteString(`package main

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ocipull/registry"
	"github.com/ocipull/registry/faults"
	"github.com/ocipull/registry/mirror"
	"github.com/ocipull/registry/oci"
	"github.com/ocipull/registry/ocitest"
	"github.com/ocipull/registry/rootfs"
)

var (
	_ = context.Background
	_ = io.Discard
	_ = httptest.NewServer
	_ = testing.Short
	_ = time.Second
	_ = registry.NewServer
	_ = faults.Stall
	_ = mirror.Open
	_ = oci.NewMemory
	_ = ocitest.Build
	_ = rootfs.Flatten
)

func main() {}
`)
	// The names the prose gives the blocks, for those that use them
	// without declaring them.
	given := []struct{ name, typ string }{
		{"ctx", "context.Context"}, {"t", "testing.TB"}, {"img", "oci.Ref"},
		{"srv", "*registry.Server"}, {"ref", "registry.Reference"}, {"dst", "io.Writer"},
	}
	for i, b := range blocks {
		body := b[1]
		seen := map[string]bool{}
		var uses []string
		for _, m := range declared.FindAllStringSubmatch(body, -1) {
			for _, name := range strings.Split(m[1], ",") {
				name = strings.TrimSpace(name)
				if name != "_" && !seen[name] {
					seen[name] = true
					uses = append(uses, name)
				}
			}
		}
		var params []string
		for _, g := range given {
			if !seen[g.name] {
				params = append(params, g.name+" "+g.typ)
				uses = append(uses, g.name)
			}
		}
		fmt.Fprintf(&src, "\n// README Go block %d\nfunc block%d(%s) error {\n%s", i+1, i+1, strings.Join(params, ", "), body)
		for _, name := range uses {
			fmt.Fprintf(&src, "\t_ = %s\n", name)
		}
		src.WriteString("\treturn nil\n}\n")
	}
	dir := t.TempDir()
	checkout, _ := filepath.Abs(".")
	sum, _ := os.ReadFile("go.sum")
	files := map[string]string{
		"main.go": src.String(),
		"go.mod":  "module readmecheck\n\ngo 1.25\n\nrequire github.com/ocipull/registry v0.0.0\n\nreplace github.com/ocipull/registry => " + checkout + "\n",
		"go.sum":  string(sum),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goBin, "build", "-mod=mod", "-o", os.DevNull, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's Go blocks do not compile: %v\n%s\n--- the program:\n%s", err, out, src.String())
	}
}

// The README's first screen does not promise an install that fails: the
// module is not on a module proxy (newcomer item 1).
func TestREADMEInstallLine(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	first := string(readme)
	if i := strings.Index(first, "## Library tour"); i > 0 {
		first = first[:i]
	}
	if !strings.Contains(first, "go install ./cmd/ocipull") {
		t.Error("the first screen does not say how to install from the checkout")
	}
	if strings.Contains(first, "go install github.com/ocipull/registry/cmd/ocipull@latest`,") {
		t.Error("the first screen offers go install …@latest as a way to install")
	}
}
