#!/usr/bin/env bash
# The whole test suite: system packages the tests drive (installed when
# missing and we are root), formatting, lints, then every test.
#
#   ./scripts/test.sh
#
# Tests that need Nix fail under CI=true when Nix is missing and are
# skipped (loudly) elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the end-to-end tests use:
#   nix-bin   real Nix client (builds, signs, nix copy, nix-store --dump)
#   fuse3     fusermount3 for the FUSE view
#   xz-utils, zstd, bzip2   compressors Nix and the tests call
#   python3   a real HTTP server (http.server) for http:// cache tests
#   nginx     the upstream cache (and web seed) as a CDN serves it
#   chromium  renders the status page (headless) in a test
# and npm packages (tests/js/package-lock.json): hypercore 10.31.12 and
# 11.35.1, the JavaScript reference the interop tests replicate with.
packages=(nix-bin fuse3 xz-utils zstd bzip2 python3 nginx chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# python3 may come from elsewhere (pyenv); only a missing command counts.
if command -v python3 >/dev/null 2>&1; then
  missing=("${missing[@]/python3}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: missing packages ${missing[*]} (run as root to install them)" >&2
  fi
fi

# The JavaScript hypercore reference for the interop tests (tests/js).
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
else
  echo "warning: npm is missing: the JavaScript interop tests cannot run" >&2
fi

# cargo-fuzz for the fuzz smoke run (the nightly toolchain is on these
# machines; rustup cannot fetch one here).
fuzz=1
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=0
elif ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked || fuzz=0
fi
if [ "$fuzz" = 0 ]; then
  if [ -n "${CI:-}" ]; then
    echo "error: the fuzz smoke run needs the nightly toolchain and cargo-fuzz" >&2
    exit 1
  fi
  echo "warning: SKIPPING the fuzz smoke run: no nightly toolchain or cargo-fuzz" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# fault-injection: the test-only fault switches the fault tests drive
# (docs/DEVELOPMENT.md); release builds leave them out.
cargo test --workspace --locked --features fault-injection 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Every fuzz target for 10 s over its committed corpus (scripts/fuzz.sh):
# a replay of the corpus and a short search; campaigns run apart.
if [ "$fuzz" = 1 ]; then
  ./scripts/fuzz.sh 10 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
set -e
# One closing line over every test binary and fuzz target (cargo prints one
# per binary, the fuzz script one for all targets).
awk '/^test result:/ { p += $4; f += $6 } /^fuzz: [0-9]+ passed/ { p += $2; f += $4 }
  END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
