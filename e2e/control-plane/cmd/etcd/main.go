// The etcd server, as the etcd repository's own main package builds it, from the etcd server
// module that k8s.io/kubernetes depends on (so its version is the one Kubernetes tests with).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
