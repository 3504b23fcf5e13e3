// Command shopfloor is the hub, the edge node and the command line of the
// Shopfloor industrial IoT platform.
package main

import (
	"fmt"
	"os"

	"github.com/shopfloor/shopfloor/internal/anomaly/eval"
	"github.com/shopfloor/shopfloor/internal/app"
	"github.com/shopfloor/shopfloor/internal/bench"
	"github.com/shopfloor/shopfloor/internal/cli"
	"github.com/shopfloor/shopfloor/internal/simulate"
)

func main() {
	logger := app.NewLogger(os.Stderr, "info")
	root := cli.NewRoot()
	root.AddCommand(app.ServeCommand(), app.DemoCommand(),
		simulate.NewCommand(logger), bench.NewCommand(logger), eval.NewCommand(logger))
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
