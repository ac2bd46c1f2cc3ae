#!/usr/bin/env bash
# Make the Synthetic3D dataset at $1 (default settings) unless it is already there. An existing folder
# made with other generation arguments is an error naming them; a new one is
# written to "$1.partial" first and renamed, so an interrupted generation is never mistaken for a dataset.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python "$here/make_synthetic_3d.py" --out "$1" --if-absent
