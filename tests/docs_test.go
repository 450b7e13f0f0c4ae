package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocs: README.md stays short enough to read first (at most 400
// lines), links every page of docs/, and every relative link of the README
// and of docs/ names a file that exists; no Go file or page cites an issue
// number (users have no tracker).
func TestDocs(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(readme), "\n"); n > 400 {
		t.Errorf("README.md has %d lines, at most 400", n)
	}
	pages, _ := filepath.Glob("../docs/*.md")
	if len(pages) == 0 {
		t.Fatal("no docs/*.md")
	}
	for _, p := range pages {
		if !strings.Contains(string(readme), "](docs/"+filepath.Base(p)) {
			t.Errorf("README.md does not link %s", strings.TrimPrefix(p, "../"))
		}
	}
	link := regexp.MustCompile(`\]\(([^)#:]+\.md)(#[^)]*)?\)`)
	for _, p := range append(pages, "../README.md") {
		text, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(text), -1) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), m[1])); err != nil {
				t.Errorf("%s links %s, which does not exist", strings.TrimPrefix(p, "../"), m[1])
			}
		}
	}
	issue := regexp.MustCompile(`(?i)\bissues?\s+(//\s*|#\s*)?[0-9]`) // also across a comment's line break
	err = filepath.Walk("..", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() && strings.HasPrefix(fi.Name(), ".") && p != ".." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, ".md") {
			return nil
		}
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if loc := issue.FindIndex(text); loc != nil {
			t.Errorf("%s cites an issue: %q", strings.TrimPrefix(p, "../"), text[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
