package app

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
)

func TestParseFlagsInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		force bool
		pos   []string
	}{
		{[]string{"-force", "a", "b"}, true, []string{"a", "b"}},
		{[]string{"a", "-force", "b"}, true, []string{"a", "b"}},
		{[]string{"a", "b", "-force"}, true, []string{"a", "b"}},
		{[]string{"a", "--", "-force"}, false, []string{"a", "-force"}},
	} {
		var force bool
		fs := newTestFlagSet(&force)
		pos, err := parseFlags(fs, tc.args, "", nil)
		if err != nil || force != tc.force || !slices.Equal(pos, tc.pos) {
			t.Errorf("parseFlags(%q) = %q, force %v, %v; want %q, %v", tc.args, pos, force, err, tc.pos, tc.force)
		}
	}
	var help bytes.Buffer
	var force bool
	if pos, err := parseFlags(newTestFlagSet(&force), []string{"-h"}, "usage text\n", &help); pos != nil || err != nil || !strings.Contains(help.String(), "usage text") || !strings.Contains(help.String(), "-force") {
		t.Errorf("-h: %q, %v, help %q", pos, err, help.String())
	}
}

func newTestFlagSet(force *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("measure", flag.ContinueOnError)
	fs.BoolVar(force, "force", false, "force")
	return fs
}
