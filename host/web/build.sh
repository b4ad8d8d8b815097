#!/usr/bin/env bash
# Builds the page into a folder (target/web by default): the WebAssembly module, the
# HTML, CSS and JavaScript, and the shipped names and micro weights to start from.
# Usage: host/web/build.sh [OUT]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/target/web}"
cd "$root"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --release --quiet -p microgpt-web --target wasm32-unknown-unknown
mkdir -p "$out"
cp host/web/www/index.html host/web/www/style.css host/web/www/app.js "$out/"
cp target/wasm32-unknown-unknown/release/microgpt_web.wasm "$out/"
cp data/names.txt data/micro.bin "$out/"
echo "built the page in $out ($(stat -c %s "$out/microgpt_web.wasm") bytes of WebAssembly)"
