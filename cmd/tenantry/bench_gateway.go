package main

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"tenantry/bench"
)

func init() { benchCommands = append(benchCommands, newBenchGatewayCmd) }

func newBenchGatewayCmd(a *app) *cobra.Command {
	var cfg bench.GatewayConfig
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Measure reads through the gateway against calling its backend directly",
		Long: `With --backend oms (the default): starts a temporary local cluster, two OMS instances
and a gateway in front of them, all on loopback, then reads orders (GET /v1/orders/{id}) in
alternating rounds through the gateway and directly (the client balancing across both
instances itself). With --backend static: a gateway in front of one loopback server that
answers 200 bytes to every request (the gateway's own cost, as nginx's is measured).
The same reads go through a bare relay too (request heads passed on unparsed, answers
relayed by their Content-Length, nothing validated or authenticated): the least a hop
costs on this machine, measured in the same rounds as a reference for the ratio. With
--nginx, the same reads through nginx with one worker as well.
Each side runs --duration in total, split into --rounds rounds. Reports throughput,
latency and their ratios.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Duration <= 0 || cfg.Workers < 1 || cfg.Rounds < 1 {
				return usageErr("--duration must be positive, --workers and --rounds at least 1")
			}
			if cfg.Backend != bench.BackendOMS && cfg.Backend != bench.BackendStatic {
				return usageErr("--backend must be " + bench.BackendOMS + " or " + bench.BackendStatic)
			}
			if cfg.Nginx != "" {
				path, err := exec.LookPath(cfg.Nginx)
				if err != nil {
					return usageErr("--nginx: %v", err)
				}
				cfg.Nginx = path
			}
			cfg.Logger = a.log
			res, err := bench.Gateway(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "gateway: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors\n",
				res.GatewayRPS, res.GatewayP50Ms, res.GatewayP99Ms, res.GatewayErrors)
			fmt.Fprintf(a.stdout, "direct:  %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors\n",
				res.DirectRPS, res.DirectP50Ms, res.DirectP99Ms, res.DirectErrors)
			fmt.Fprintf(a.stdout, "relay:   %.0f req/s, %d errors (the reference: a bare relay instead of the gateway)\n",
				res.RelayRPS, res.RelayErrors)
			if ng := res.Nginx; ng != nil {
				fmt.Fprintf(a.stdout, "nginx:   %.0f req/s, %d errors (the reference: %s, one worker, instead of the gateway); nginx/direct %.2f\n",
					ng.RPS, ng.Errors, ng.Version, ng.Ratio)
			}
			fmt.Fprintf(a.stdout, "ratio (gateway/direct throughput): %.2f median of rounds, %.2f of totals; relay/direct %.2f  [%s backend, %d workers, %d rounds, %.1fs per side]\n",
				res.Ratio, res.RatioOfTotals, res.RelayRatio, res.Backend, res.Workers, res.Rounds, res.DurationS)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfg.Backend, "backend", bench.BackendOMS, "what the gateway fronts: oms (two OMS instances) or static (a 200-byte loopback server)")
	cmd.Flags().DurationVar(&cfg.Duration, "duration", 5*time.Second, "measuring time per side (gateway, direct and relay)")
	cmd.Flags().IntVar(&cfg.Workers, "workers", 16, "concurrent clients")
	cmd.Flags().IntVar(&cfg.Rounds, "rounds", 10, "alternating rounds per side")
	cmd.Flags().StringVar(&cfg.Nginx, "nginx", "", "an nginx executable (name on $PATH or path): the same reads through nginx, one worker, in the same rounds, as a second reference")
	return cmd
}
