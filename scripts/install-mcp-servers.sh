#!/usr/bin/env bash
# Installs the third-party MCP servers the tests run against, from the npm registry:
# @modelcontextprotocol/server-everything (pinned). Idempotent; needs node and npm (>= 18).
# They go to $AETHER_MCP_SERVERS (default ~/.cache/aether-mcp), outside any checkout; once
# installed they run offline. Prints the server-everything entry point (a JS file) on stdout.
set -euo pipefail
dir="${AETHER_MCP_SERVERS:-$HOME/.cache/aether-mcp}"
version="2026.8.31"
entry="$dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
stamp="$dir/.server-everything-$version"
if [[ ! -f "$stamp" || ! -f "$entry" ]]; then
  command -v npm >/dev/null || { echo "npm is required: apt-get install nodejs npm" >&2; exit 1; }
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" "@modelcontextprotocol/server-everything@$version" >&2
  touch "$stamp"
fi
[[ -f "$entry" ]] || { echo "server-everything installed but $entry is missing" >&2; exit 1; }
echo "$entry"
