// Command etcd is the etcd server, built inside this module because
// `go install go.etcd.io/etcd/server/v3@…` refuses modules with replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
