// etcd, as the etcd release binaries build it (server/main.go): kloghub's test harness
// starts it for kube-apiserver. Built by scripts/get_kube.py.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
