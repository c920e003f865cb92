package dashboard

import (
	"context"
	"net/http"
	"net/url"
)

// commandSet is the operator commands of one kind of workflow (moves,
// rollouts): each is asked on a confirmation page, then sent and waited
// for as the CLI does; a refusal is shown on the workflow's page with the
// API's text.
type commandSet struct {
	// path is the views' path under Prefix ("moves").
	path string
	// questions are what each command's confirmation asks.
	questions map[string]string
	// describe says in a line what the command would act on.
	describe func(ctx context.Context, id string) (string, error)
	run      func(ctx context.Context, id, name string) error
}

type confirmData struct {
	ID, Command, Question, Description, Action, Back string
}

func (d *Dashboard) handleCommands(c commandSet) {
	d.mux.Handle("GET /ui/"+c.path+"/{id}/{command}", d.view(d.confirmCommand(c)))
	d.mux.Handle("POST /ui/"+c.path+"/{id}/{command}", d.change(d.sendCommand(c)))
}

// confirmCommand asks before a command is sent: the page's button posts it.
func (d *Dashboard) confirmCommand(c commandSet) viewFunc {
	return func(w http.ResponseWriter, r *http.Request, p *page) error {
		id, name := r.PathValue("id"), r.PathValue("command")
		q, ok := c.questions[name]
		if !ok {
			http.NotFound(w, r)
			return nil
		}
		desc, err := c.describe(r.Context(), id)
		if err != nil {
			return err
		}
		back := Prefix + c.path + "/" + url.PathEscape(id)
		p.Title, p.Nav = "Confirm "+name, c.path
		p.Data = &confirmData{ID: id, Command: name, Question: q, Description: desc, Action: back + "/" + url.PathEscape(name), Back: back}
		return d.render(w, http.StatusOK, "confirm", p)
	}
}

// sendCommand sends a command and waits until the workflow acted on it.
func (d *Dashboard) sendCommand(c commandSet) viewFunc {
	return func(w http.ResponseWriter, r *http.Request, p *page) error {
		id, name := r.PathValue("id"), r.PathValue("command")
		if _, ok := c.questions[name]; !ok {
			http.NotFound(w, r)
			return nil
		}
		target := Prefix + c.path + "/" + url.PathEscape(id)
		if err := c.run(r.Context(), id, name); err != nil {
			d.log.Info("command refused", "workflow", id, "command", name, "err", err)
			http.Redirect(w, r, target+"?"+url.Values{"error": {d.cfg.ErrorText(err)}}.Encode(), http.StatusSeeOther)
			return nil
		}
		http.Redirect(w, r, target+"?done="+url.QueryEscape(name), http.StatusSeeOther)
		return nil
	}
}
