#!/usr/bin/env bash
# Builds the page and serves it on http://localhost:8000 (another port: PORT=8080).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/build.sh"
port="${PORT:-8000}"
echo "open http://localhost:$port/"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory "$here/../../target/web"
