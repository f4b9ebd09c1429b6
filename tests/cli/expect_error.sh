#!/usr/bin/env bash
# Runs a command that must fail: exit code non-zero, stderr ending in one
# line that matches a regular expression, no crash (signals are failures).
#   expect_error.sh REGEX COMMAND [ARGS...]
set -u
regex=$1
shift
err=$("$@" 2>&1 >/dev/null)
code=$?
if ((code == 0)); then
  echo "FAIL: '$*' exited 0; expected an error matching: $regex"
  exit 1
fi
if ((code > 128)); then
  echo "FAIL: '$*' died with signal $((code - 128)):"
  echo "$err"
  exit 1
fi
last=$(printf '%s\n' "$err" | tail -n 1)
if ! grep -Eq -- "$regex" <<<"$last"; then
  echo "FAIL: '$*' (exit $code) said:"
  echo "$err"
  echo "expected the last line to match: $regex"
  exit 1
fi
echo "ok (exit $code): $last"
