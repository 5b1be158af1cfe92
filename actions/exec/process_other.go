//go:build !unix

package execaction

import (
	"context"
	"errors"
)

// processGroups reports whether this system can run programs in their own
// process group; New refuses where it cannot, since a timeout could not
// kill what the program started.
const processGroups = false

func run(ctx context.Context, s spec) outcome {
	return outcome{startErr: errors.New("process groups are not supported on this system"),
		stdout: newTail(s.limit), stderr: newTail(s.limit)}
}
