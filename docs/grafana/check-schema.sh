#!/bin/sh
# Type-check ha-ingress-proxy.json against Grafana's own dashboard schema, offline after one
# `npm install`: @grafana/schema carries the TypeScript types Grafana generates from its CUE
# dashboard schema (raw/dashboard/x/types.gen.d.ts). The dashboard is checked as an object
# literal of type Dashboard, so tsc also refuses unknown keys (excess property checks).
# Not run by the test suite (it needs npm); tests/test_grafana.py checks the shape and that
# every query parses with promtool. Usage: docs/grafana/check-schema.sh [WORKDIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-build/grafana-schema}
mkdir -p "$work"
cd "$work"
[ -d node_modules/@grafana/schema ] || npm install --no-audit --no-fund --silent @grafana/schema@13.2.3 typescript@7.0.2
{
    echo 'import type { Dashboard, ThresholdsMode } from "./node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.js";'
    printf 'export const dashboard: Dashboard = '
    # __inputs/__requires are export metadata Grafana strips on import; string enums need their type named
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); [d.pop(k) for k in ("__inputs", "__requires")]; print(json.dumps(d, indent=1))' \
        "$here/ha-ingress-proxy.json" | sed 's|"mode": "absolute"|"mode": "absolute" as ThresholdsMode|'
    echo ';'
} > check.ts
npx tsc --noEmit --strict --module nodenext --moduleResolution nodenext --target es2020 check.ts
echo "ha-ingress-proxy.json: matches @grafana/schema's Dashboard type"
