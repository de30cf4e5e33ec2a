// Command build makes the redhaven .deb and .rpm with nfpm:
//
//	go run ./packaging/build -bin dist/redhaven -version "$(packaging/version.sh)" -arch amd64 -out dist
//
// It prints the path of each package it wrote, one per line.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/redhaven/redhaven/packaging"
)

func main() {
	var (
		opts    packaging.Options
		formats string
	)
	flag.StringVar(&opts.Config, "config", "packaging/nfpm.yaml", "nfpm config; its relative paths are resolved against its folder")
	flag.StringVar(&opts.Binary, "bin", "dist/redhaven", "the redhaven binary to package")
	flag.StringVar(&opts.Version, "version", "", "version, e.g. from packaging/version.sh (git describe of a vX.Y.Z tag; required)")
	flag.StringVar(&opts.Arch, "arch", runtime.GOARCH, "GOARCH of the binary")
	flag.StringVar(&opts.OutDir, "out", "dist", "output folder")
	flag.StringVar(&formats, "formats", "deb,rpm", "comma-separated nfpm packagers")
	printVersion := flag.Bool("print-version", false, "print the package version made from -version and exit (for image tags)")
	flag.Parse()
	if *printVersion {
		v, err := packaging.CleanVersion(opts.Version)
		if err != nil {
			fmt.Fprintf(os.Stderr, "build: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(v)
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "build: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	opts.Formats = strings.Split(formats, ",")

	paths, err := packaging.Build(opts)
	for _, p := range paths {
		fmt.Println(p)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n", err)
		os.Exit(1)
	}
}
