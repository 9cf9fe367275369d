"""Calls one method of a real client library against cairn and prints its result as JSON.

    python3 client.py chronos|chronos2 HOST:PORT METHOD [JSON-ARG ...]

`chronos` is chronos-python with its default Chronos 3 paths (`/v1/scheduler`), `chronos2`
the same client with Chronos 2 paths (`/scheduler`, updates by PUT). Exit code 0 with the
result on stdout, or 3 with the client's exception (type: message) on stderr.
"""

import json
import sys


def client(kind, server):
    if kind in ("chronos", "chronos2"):
        import chronos

        version = "v1" if kind == "chronos" else None
        return chronos.connect(server, scheduler_api_version=version)
    raise SystemExit(f"unknown client kind {kind!r}")


def main():
    kind, server, method = sys.argv[1:4]
    args = [json.loads(a) for a in sys.argv[4:]]
    try:
        result = getattr(client(kind, server), method)(*args)
    except Exception as e:  # the test asserts on the client's own error
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps(result))


main()
