#!/usr/bin/env bash
# Runs the README's Quick start line by line, as written there, against a
# fresh data directory, and stops the platform at the end. The lines are
# read from README.md (the ```sh block under "## Quick start"), so the
# script and the README cannot drift apart. Only what a person does between
# the lines is done here:
#   - `bin/tenantry up` runs in the background (the README's "terminal of its
#     own"), and the next line waits until it says it is up;
#   - <api-key> is the key the preceding `tenant create` printed;
#   - a bare `wait` also collects the exit status of the background lines.
# Every line runs in a fresh work directory (data directory ./.tenantry,
# load.log and ledger.jsonl there) with bin/ linked to the repository's.
# Exit 0 when every line succeeded; the transcript is kept in the work
# directory when one did not (or when KEEP=1).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/tenantry-quickstart-XXXXXX")
chmod 755 "$work" # PostgreSQL runs as an unprivileged user: it must reach its data
transcript="$work/transcript.txt"
up_pid=""
bg_pids=()
key=""
ok=0

say() { printf '%s\n' "$*" | tee -a "$transcript"; }

finish() {
	if [[ -n "$up_pid" ]] && kill -0 "$up_pid" 2>/dev/null; then
		say "# stopping the platform (Ctrl-C to bin/tenantry up)"
		kill -INT "$up_pid"
		local deadline=$((SECONDS + 120))
		while kill -0 "$up_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 1; done
		if kill -0 "$up_pid" 2>/dev/null; then
			say "quickstart: bin/tenantry up did not stop within 2 minutes of Ctrl-C"
			kill -TERM "$up_pid"
			ok=0
		fi
		wait "$up_pid"
	fi
	if [[ $ok == 1 && "${KEEP:-0}" != 1 ]]; then
		rm -rf "$work"
	else
		echo "work directory kept: $work (transcript.txt, up.log, load.log)" >&2
	fi
	[[ $ok == 1 ]] || exit 1
}
trap finish EXIT

fail() {
	say "quickstart: FAILED: $*"
	exit 1
}

# The Quick start's lines: the sh block after "## Quick start".
mapfile -t lines < <(awk '/^## Quick start/{q=1; next} q && /^```sh/{b=1; next} b && /^```/{exit} b' "$repo/README.md")
[[ ${#lines[@]} -gt 0 ]] || fail "no Quick start block in README.md"

# wait_up waits until `bin/tenantry up` says it is up.
wait_up() {
	local deadline=$((SECONDS + 600))
	until grep -q "tenantry is up" "$work/up.log" 2>/dev/null; do
		kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log" >&2; fail "bin/tenantry up exited"; }
		((SECONDS < deadline)) || fail "bin/tenantry up did not come up within 10 minutes"
		sleep 1
	done
	say "$(cat "$work/up.log")"
}

for line in "${lines[@]}"; do
	cmd=$(sed -E 's/[[:space:]]+#.*$//' <<<"$line")
	[[ -z "$cmd" || "$cmd" == \#* ]] && continue
	if [[ "$cmd" == "make "* ]]; then
		say "\$ $cmd"
		(cd "$repo" && eval "$cmd") 2>&1 | tee -a "$transcript"
		[[ ${PIPESTATUS[0]} == 0 ]] || fail "$cmd"
		ln -s "$repo/bin" "$work/bin"
		cd "$work" || exit 1
		continue
	fi
	if [[ "$cmd" == "bin/tenantry up"* ]]; then
		say "\$ $cmd    # in the background"
		# exec: the background job is bin/tenantry itself, so that the
		# Ctrl-C sent at the end reaches it.
		eval "exec $cmd" >"$work/up.log" 2>&1 &
		up_pid=$!
		wait_up
		continue
	fi
	if [[ "$cmd" == *"<api-key>"* ]]; then
		[[ -n "$key" ]] || fail "no API key printed before: $cmd"
		cmd=${cmd//<api-key>/$key}
	fi
	say "\$ $cmd"
	if [[ "$cmd" == *"&" ]]; then
		eval "$cmd"
		bg_pids+=($!)
		continue
	fi
	if [[ "$cmd" =~ ^wait\;?[[:space:]]*(.*)$ ]]; then
		for pid in "${bg_pids[@]}"; do
			wait "$pid" || fail "a background line exited $?"
		done
		bg_pids=()
		cmd=${BASH_REMATCH[1]}
		[[ -n "$cmd" ]] || continue
	fi
	out="$work/last.out"
	eval "$cmd" >"$out" 2>&1
	status=$?
	tee -a "$transcript" <"$out"
	((status == 0)) || fail "exit $status: $cmd"
	if grep -q "api key (shown once): " "$out"; then
		key=$(sed -nE 's/.*api key \(shown once\): *([^ ]+).*/\1/p' "$out" | head -n 1)
	fi
done

# Every line a person reads is plain: no Go map syntax, no bare state letters.
if grep -nE 'map\[|^ +copy +[^ ]+ +[idfsr] ' "$transcript"; then
	fail "the lines above are not plain"
fi
ok=1
say "quickstart: every line of the README's Quick start ran, in ${SECONDS} s"
