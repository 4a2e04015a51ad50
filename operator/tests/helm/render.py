"""Lints and renders the Helm chart with Helm's own engine (helm-python-sdk, which wraps Helm's
Go SDK; no helm binary), for the Rust test in operator/tests/chart.rs.

Reads {"chart": DIR, "cases": {NAME: VALUES}} as JSON on stdin and writes
{"cases": {NAME: {"lint": REPORT, "manifests": {TEMPLATE: TEXT}}}, "crds": [{"name", "data"}]}
as JSON on stdout.
"""

import json
import sys

import helm_python as helm


def main() -> int:
    request = json.load(sys.stdin)
    chart_dir = request["chart"]
    out = {"cases": {}, "crds": [], "helm_sdk": helm.helm_sdk_version()}
    with helm.Chart.load(chart_dir) as chart:
        out["crds"] = chart.crds
        for name, values in request["cases"].items():
            report = helm.lint(chart_dir, values, strict=True, namespace="norn-system")
            manifests = chart.render(values, name="norn", namespace="norn-system", is_install=True)
            out["cases"][name] = {"lint": report, "manifests": manifests}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
