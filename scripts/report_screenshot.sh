#!/usr/bin/env bash
# Picture of a demo report for the README: headless Chromium renders REPORT (up to its Timings
# section), then the PNG is scaled to WIDTH pixels and reduced to a 256-colour palette (< 300 KB).
#   scripts/report_screenshot.sh demo_out/report.html docs/demo_report.png [WIDTH]
# Needs chromium (`apt-get install -y chromium`).
set -euo pipefail
report=$(realpath "$1")
png=$2
width=${3:-640}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$report" "$work/top.html" <<'EOF'
import sys
html = open(sys.argv[1]).read()
cut = html.find("<h2>Timings")
open(sys.argv[2], "w").write(html[:cut] + "</body></html>" if cut > 0 else html)
EOF
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1150,6000 \
    --screenshot="$work/full.png" "file://$work/top.html" >/dev/null 2>&1
python3 - "$work/full.png" "$png" "$width" <<'EOF'
import sys
import numpy as np
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
ink = np.where((np.asarray(im) < 250).any(axis=(1, 2)))[0]
im = im.crop((0, 0, im.width, int(ink.max()) + 16))
width = int(sys.argv[3])
im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
im.quantize(256, dither=Image.Dither.NONE).save(sys.argv[2], optimize=True)
print(f"{sys.argv[2]}: {im.width}x{im.height}")
EOF
ls -l "$png"
