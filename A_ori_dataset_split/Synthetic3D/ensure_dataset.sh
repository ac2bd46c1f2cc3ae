#!/usr/bin/env bash
# Make the Synthetic3D dataset at $1 (default settings) unless it is already there.
# Written to "$1.partial" first and renamed, so an interrupted generation is never mistaken for a dataset.
set -euo pipefail
out="$1"
if [[ -d "$out" ]]; then exit 0; fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$out.partial"
python "$here/make_synthetic_3d.py" --out "$out.partial"
mv "$out.partial" "$out"
