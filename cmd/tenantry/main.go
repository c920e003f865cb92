// Command tenantry is the single binary of the tenantry platform: the control
// plane, the gateway, the reference OMS service, and the CLI that drives them.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
