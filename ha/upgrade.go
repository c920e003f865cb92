package ha

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"tenantry/registry"
	"tenantry/workflow"
)

// UpgradeKind is the workflow kind of an upgrade: settings applied to the
// standby (restarted), a switchover to it, and the settings applied to the
// old primary before it rejoins; then to any other standby. A setting that
// needs a restart stands in for a minor-version upgrade of the server.
const UpgradeKind = "upgrade"

// MaxSettings bounds the settings of one upgrade.
const MaxSettings = 20

var settingNameRe = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,62}$`)

// UpgradeRequest asks to apply Settings (name -> value, as `SET` would
// take them) to every member of Cluster, switching over to To (empty: the
// standby least behind).
type UpgradeRequest struct {
	Cluster  string            `json:"cluster"`
	To       string            `json:"to,omitempty"`
	Settings map[string]string `json:"settings"`
}

// validateSettings checks names and values; values reach postgresql.conf
// quoted, so only what a line cannot hold is refused.
func validateSettings(settings map[string]string) error {
	if len(settings) == 0 || len(settings) > MaxSettings {
		return fmt.Errorf("%w: an upgrade sets 1 to %d settings, not %d", registry.ErrInvalid, MaxSettings, len(settings))
	}
	for k, v := range settings {
		if !settingNameRe.MatchString(k) {
			return fmt.Errorf("%w: setting name %q must match %s", registry.ErrInvalid, k, settingNameRe)
		}
		if len(v) > 1024 || strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("%w: value of setting %s: at most 1024 characters on one line", registry.ErrInvalid, k)
		}
	}
	return nil
}

// quoted returns settings with their values quoted for postgresql.conf.
func quoted(settings map[string]string) map[string]string {
	out := make(map[string]string, len(settings))
	for k, v := range settings {
		out[k] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	return out
}

// Upgrade checks the request and starts the upgrade.
func (h *Service) Upgrade(ctx context.Context, req UpgradeRequest) (*Info, error) {
	if err := registry.ValidateName("cluster", req.Cluster); err != nil {
		return nil, err
	}
	if req.To != "" {
		if err := registry.ValidateName("member", req.To); err != nil {
			return nil, err
		}
	}
	if err := validateSettings(req.Settings); err != nil {
		return nil, err
	}
	d := SwitchoverData{Cluster: req.Cluster, To: req.To, Settings: req.Settings}
	if err := h.check(ctx, &d); err != nil {
		return nil, err
	}
	id, err := h.runner.Create(ctx, UpgradeKind, req.Cluster, d)
	if err != nil {
		return nil, err
	}
	return h.Get(ctx, id)
}

func (h *Service) upgradeDef() *workflow.Def {
	d := h.switchoverDef()
	d.Kind, d.Start = UpgradeKind, "configure-standby"
	d.Steps["configure-standby"] = h.configureStandbyStep
	d.Steps["configure-others"] = h.configureOthersStep
	return d
}

// configureStandbyStep applies the settings to the standby the switchover
// will promote, restarts it and waits until it streams again.
func (h *Service) configureStandbyStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		if err := h.cfg.Servers.ConfigureMember(ctx, d.Cluster, d.To, quoted(d.Settings)); err != nil {
			return "", err
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for {
			err := h.check(wctx, d)
			if err == nil {
				break
			}
			select {
			case <-wctx.Done():
				return "", workflow.Fail(fmt.Errorf("standby %s after its restart: %w", d.To, err))
			case <-time.After(100 * time.Millisecond):
			}
		}
		_ = r.Info(ctx, fmt.Sprintf("settings applied to standby %s", d.To), d.Settings)
		return "precheck", nil
	})
}

// configureOthersStep applies the settings to the cluster's other standbys
// and records the upgrade.
func (h *Service) configureOthersStep(ctx context.Context, r *workflow.Run) (string, error) {
	return step(r, func(d *SwitchoverData) (string, error) {
		c, _, _, err := h.members(ctx, d)
		if err != nil {
			return "", err
		}
		for _, m := range c.Members {
			if m.Name == d.To || m.Name == d.From || m.Role != registry.RoleStandby {
				continue
			}
			if err := h.cfg.Servers.ConfigureMember(ctx, d.Cluster, m.Name, quoted(d.Settings)); err != nil {
				return "", err
			}
		}
		msg := fmt.Sprintf("upgrade of cluster %s: settings %v on every member; primary %s -> %s, tenants paused %.1f ms",
			d.Cluster, d.Settings, d.From, d.To, d.PauseMS)
		if err := h.cfg.Registry.AddEvent(ctx, registry.EventUpgraded, d.Cluster, msg, d); err != nil {
			return "", err
		}
		return "", nil
	})
}
