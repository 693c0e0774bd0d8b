#!/usr/bin/env bash
# Revokes the sign-in sessions of the users named as arguments through graph-revoke.
#
#   GRAPH_REVOKE_URL=https://graph-revoke.example.com GRAPH_REVOKE_API_KEY=... \
#     examples/revoke.sh [--what-if] <user> [<user>...]
#
# A user is an object id (GUID) or a userPrincipalName. One user is sent as {"userId"},
# several as {"userIds": [...]}; --what-if asks for a dry run (nothing is revoked).
# Prints graph-revoke's JSON answer; exit status 0 when every user was revoked (or the dry
# run passed), 2 when only some were (207), 1 on an error. Needs curl; uses jq when present.
set -euo pipefail

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 1; }

what_if=false
users=()
for arg in "$@"; do
  case "$arg" in
    --what-if) what_if=true ;;
    -h | --help) usage ;;
    -*) echo "unknown option: $arg" >&2; usage ;;
    *) users+=("$arg") ;;
  esac
done
[[ ${#users[@]} -gt 0 ]] || usage
: "${GRAPH_REVOKE_URL:?set GRAPH_REVOKE_URL to the base URL of graph-revoke}"
: "${GRAPH_REVOKE_API_KEY:?set GRAPH_REVOKE_API_KEY to one of the api_keys of graph-revoke}"

# A JSON string literal for $1: jq when present, else escaped by hand (backslash, quote and
# control characters), so no id can break out of its string.
json_string() {
  if command -v jq >/dev/null 2>&1; then
    jq -cn --arg s "$1" '$s'
    return
  fi
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in
      '"') out+='\"' ;;
      "\\") out+="\\\\" ;;
      [[:cntrl:]]) out+=$(printf '\\u%04x' "'$c") ;;
      *) out+=$c ;;
    esac
  done
  printf '"%s"' "$out"
}

if [[ ${#users[@]} -eq 1 ]]; then
  body="{\"userId\":$(json_string "${users[0]}")"
else
  body="{\"userIds\":["
  sep=""
  for user in "${users[@]}"; do
    body+="$sep$(json_string "$user")"
    sep=","
  done
  body+="]"
fi
if [[ $what_if == true ]]; then
  body+=",\"whatIf\":true"
fi
body+="}"

answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
# The key goes in through a here-string header file, not the command line (no `ps` can see it).
status=$(curl -sS -o "$answer" -w '%{http_code}' -X POST "${GRAPH_REVOKE_URL%/}/revoke" \
  -H @- -H 'content-type: application/json' --data-binary "$body" \
  <<<"x-api-key: $GRAPH_REVOKE_API_KEY")

if command -v jq >/dev/null 2>&1 && jq . "$answer" 2>/dev/null; then :; else cat "$answer"; echo; fi
echo "HTTP $status" >&2
case "$status" in
  200) exit 0 ;;
  207) exit 2 ;;
  *) exit 1 ;;
esac
