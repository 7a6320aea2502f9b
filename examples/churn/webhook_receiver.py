"""A webhook receiver for the tour: prints each alert notification it receives.

python examples/churn/webhook_receiver.py [PORT]      # default 9000, on 127.0.0.1
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"raw": body.decode(errors="replace")}
        for alert in payload.get("alerts", [payload]):
            labels = alert.get("labels", {})
            summary = alert.get("annotations", {}).get("summary", "")
            print(f"[{alert.get('status', '?')}] {labels.get('alertname', '?')}: {summary}")
        sys.stdout.flush()
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}/alerts")
    HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
