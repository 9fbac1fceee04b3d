#!/usr/bin/env bash
# Cargo's runner for Windows programs: runs one under Wine, with a time limit. A program that
# fails because Wine itself lost the connection to its server ("wine client error: ...", a
# fault of Wine's, seen once in many runs, before the program printed anything) runs once more;
# any other failure is the program's and stands. The program's standard error is shown after
# it ends.
set -uo pipefail
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
timeout --kill-after=10 600 wine "$@" 2>"$errors"
status=$?
cat "$errors" >&2
if [ "$status" -ne 0 ] && grep -q "^wine client error" "$errors"; then
    echo "== Wine lost its server running $1; running it once more" >&2
    timeout --kill-after=10 600 wine "$@" 2>"$errors"
    status=$?
    cat "$errors" >&2
fi
exit "$status"
