// Command coredns is CoreDNS, built from its Go module, with only
// the plugins the local node's cluster DNS needs: Service and Pod names from
// the API server (kubernetes), answered from a cache, with health, readiness
// and metrics endpoints for the Deployment's probes.
//
// There is deliberately no forward plugin, nor any other that sends queries
// elsewhere (docs/node.md: the host's resolver must not be reached): a name
// outside the zones the Corefile serves is refused, not resolved upstream.
// Without forward no query can come back to this server, so loop, which
// only detects that, is left out too.
//
// This is upstream's own main (coredns.go) with upstream's plugin list
// (core/plugin, generated from plugin.cfg) replaced by the imports below and
// dnsserver.Directives by the same plugins, in upstream's order.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives is the order in which the plugins see a query: each one sees
// the effect of those after it. It is upstream's order (plugin.cfg) with
// the plugins not built in left out; "prometheus" is the metrics plugin's
// directive. The kubernetes plugin's own imports register metadata and
// transfer too (coredns -plugins lists them), but a directive missing here
// is refused when the Corefile is read ("Unknown directive"), as forward is.
// The metrics plugin is linked in by the cache plugin anyway: it costs
// no size.
var directives = []string{
	"reload",
	"bind",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
