package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMECommandLines checks every ocipull command line the README
// shows (its shell blocks and its command table's examples): the command
// exists, its flags parse, and it gets as many arguments as it takes. The
// lines are not run: most name public registries.
func TestREADMECommandLines(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		text   string
		inline bool // an inline code span of the prose or the table
	}
	var lines []line
	for _, b := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		joined := strings.ReplaceAll(b[1], "\\\n", " ")
		for _, l := range strings.Split(joined, "\n") {
			lines = append(lines, line{l, false})
		}
	}
	placeholder := regexp.MustCompile(`(^|\s)[A-Z][A-Z_]*(\s|$|\[)`)
	for _, m := range regexp.MustCompile("`(ocipull [^`]+)`").FindAllStringSubmatch(string(readme), -1) {
		span := strings.ReplaceAll(m[1], `\|`, "|")
		if placeholder.MatchString(span) || len(strings.Fields(span)) < 3 {
			continue // a synopsis ("pull --jobs N") or a bare mention ("ocipull serve")
		}
		lines = append(lines, line{span, true})
	}
	checked := 0
	for _, ln := range lines {
		l := ln.text
		l, _, _ = strings.Cut(l, "#")
		l, _, _ = strings.Cut(l, "|") // a pipe into another program
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "go run ./cmd/ocipull"))
		l = strings.TrimSpace(strings.TrimPrefix(l, "ocipull"))
		if l == "" || strings.HasPrefix(l, "bash") || strings.HasPrefix(l, "go ") || strings.HasPrefix(l, "(") {
			continue
		}
		fields := strings.Fields(l)
		if strings.Contains(fields[0], "|") || strings.HasPrefix(fields[0], "CMD") {
			continue // a synopsis such as "completion bash|zsh" or "help CMD"
		}
		fields = commandFirst(fields)
		c := lookup(fields[0])
		if c == nil {
			if fields[0] == "help" || fields[0] == "--version" || fields[0] == "--help" {
				continue
			}
			t.Errorf("README: %q: no command %q", l, fields[0])
			continue
		}
		f, _ := c.flags(&env{})
		pos, err := f.parse(fields[1:])
		if err == nil {
			err = c.checkArgs(len(pos))
		}
		if err != nil && !strings.Contains(l, "CMD") && !strings.Contains(l, "REF") {
			t.Errorf("README: %q: %v", l, err)
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("only %d command lines checked", checked)
	}
}
