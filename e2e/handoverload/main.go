// Command handoverload puts a pipelined load on a Redis endpoint (the
// proxy) and checks every reply: run it while the agent hands over
// (kill -USR2, systemctl reload) to see dropped connections and the
// longest pause clients saw.
//
//	go build -o /tmp/hoload ./e2e/handoverload
//	/tmp/hoload -addr 127.0.0.1:6380 -conns 8 -P 16 -d 25s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/redhaven/redhaven/e2e/loadgen"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6380", "address of the proxy")
	conns := flag.Int("conns", 8, "connections")
	pipeline := flag.Int("P", 16, "commands per pipelined batch")
	dur := flag.Duration("d", 20*time.Second, "duration")
	db := flag.String("db", "", "SELECT this database first on each connection")
	flag.Parse()
	opt := loadgen.Options{Addr: *addr, Conns: *conns, Pipeline: *pipeline}
	if *db != "" {
		opt.Setup = [][]string{{"SELECT", *db}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	res := loadgen.Run(ctx, opt)
	fmt.Println(res)
	for _, e := range res.Errors {
		fmt.Println("  ", e)
	}
	if res.Drops > 0 || res.Misordered > 0 {
		os.Exit(1)
	}
}
