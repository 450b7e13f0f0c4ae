package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseFlags parses flags anywhere among the arguments ("measure in.h5
// out.h5 -force" works) and returns the positional arguments. With -h it
// prints the usage to stdout and returns nil, nil. A bad flag is a
// one-line UsageError.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	pos := []string{}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fmt.Fprint(stdout, usage)
				fs.PrintDefaults()
				return nil, nil
			}
			return nil, usagef("%s: %v (see nfschwinger %s -h)", fs.Name(), err, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
