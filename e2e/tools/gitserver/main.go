// Command gitserver serves a directory of bare Git repositories over smart HTTP, fetch and push, for the
// GitOps tests of the local control plane (e2e/up.sh with VEER_E2E_GITOPS=1): source-controller clones
// from it and image-automation-controller pushes to it.
//
//	gitserver --listen 127.0.0.1:19797 --root DIR
//
// http://ADDR/PATH.git is the bare repository DIR/PATH.git; pushing to one that does not exist creates it
// (so a test needs no set-up step), with `main` as its default branch, while fetching from one answers
// 404. GET /healthz answers 200 once the server listens (up.sh's readiness check).
//
// The Git protocol itself is fluxcd/gitkit, which runs the machine's `git upload-pack` and `git
// receive-pack --stateless-rpc`: the library that fluxcd/pkg/gittestserver wraps and that Flux's own tests
// serve repositories with. gittestserver itself cannot be used here: it listens through net/http/httptest
// on a random port, and the stack pins every port (e2e/lib.sh).
//
// No authentication and no TLS: the server listens on loopback only, and holds nothing but what the tests
// push into a directory under the run directory (gitkit supports basic auth, should a test ever need it).
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fluxcd/gitkit"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (host:port)")
	root := flag.String("root", "", "directory of the bare repositories (created when missing)")
	flag.Parse()
	if *root == "" {
		log.Fatal("--root is required")
	}
	dir, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}

	// gitkit creates a repository on its first push with a plain `git init --bare`, which inherits this
	// environment: name the default branch here rather than depend on the machine's git config (and
	// silence git's hint about it).
	os.Setenv("GIT_CONFIG_COUNT", "1")
	os.Setenv("GIT_CONFIG_KEY_0", "init.defaultBranch")
	os.Setenv("GIT_CONFIG_VALUE_0", "main")

	// gitkit's AutoCreate creates a missing repository on any request, a clone included, so that a typo
	// in a URL would serve an empty repository instead of failing: only pushes go to the creating one.
	fetch := gitkit.New(gitkit.Config{Dir: dir})
	push := gitkit.New(gitkit.Config{Dir: dir, AutoCreate: true})
	if err := fetch.Setup(); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A push is GET .../info/refs?service=git-receive-pack, then POST .../git-receive-pack.
		if r.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			push.ServeHTTP(w, r)
		} else {
			fetch.ServeHTTP(w, r)
		}
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// No write timeout: a large fetch or push streams for as long as it takes.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving the repositories in %s on http://%s", dir, ln.Addr())

	// TERM (e2e/down.sh) or INT: stop accepting, let running requests finish for up to 5 s.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-drained
}
