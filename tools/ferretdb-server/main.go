// Command ferretdb-server runs FerretDB (a MongoDB wire-protocol server over SQLite) for
// the appliance's tests and air-gapped bundles, where no MongoDB server can be installed.
//
// It embeds FerretDB's Go package rather than building FerretDB's own command, because
// that command refuses to start when built from the module proxy (it expects a
// version file that only its release build writes).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only with -pprof-addr
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "host:port to listen on")
	dataDir := flag.String("data-dir", "data", "folder for the SQLite databases")
	logLevel := flag.String("log-level", "error", "debug, info, warn or error")
	synchronous := flag.String("synchronous", "full",
		"SQLite's synchronous pragma: normal (the write-ahead log is synced at checkpoints) or full (at every commit)")
	pprofAddr := flag.String("pprof-addr", "", "host:port to serve Go's profiler on (none if empty)")
	flag.Parse()

	if *synchronous != "normal" && *synchronous != "full" {
		fmt.Fprintf(os.Stderr, "ferretdb-server: bad -synchronous %q: normal or full\n", *synchronous)
		os.Exit(2)
	}
	if *pprofAddr != "" {
		go func() {
			if err := http.ListenAndServe(*pprofAddr, nil); err != nil {
				fmt.Fprintf(os.Stderr, "ferretdb-server: profiler: %v\n", err)
			}
		}()
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-server: bad -log-level: %v\n", err)
		os.Exit(2)
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-server: %v\n", err)
		os.Exit(1)
	}

	server, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dataDir + "/?" + url.Values{"_pragma": {"synchronous(" + *synchronous + ")"}}.Encode(),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-server: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "ferretdb-server: listening on %s, data in %s\n", *listen, *dataDir)
	if err := server.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "ferretdb-server: %v\n", err)
		os.Exit(1)
	}
}
