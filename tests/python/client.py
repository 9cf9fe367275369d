"""Calls a real client library against cairn and prints the result as JSON.

    python3 client.py KIND SERVER CALL [JSON-ARG ...]

KIND: `chronos` (chronos-python, Chronos 3 paths `/v1/scheduler`), `chronos2` (the same
client on Chronos 2 paths, where updates are PUT), `marathon` (marathon-python),
`mesos-operator` (pymesos' operator driver, SERVER as HOST:PORT). CALL is a
method name, called with the JSON arguments, or a Python expression over `c` (the client),
`A` (the arguments) and marathon-python's models. `CAIRN_CLIENT_AUTH` gives the client
credentials (`basic:USER:PASSWORD`, or `token:SECRET` for marathon-python). Exit code 0 with the result on stdout, or 3
with the client's exception (`Type: message`) on stderr.
"""

import json
import os
import sys


def credentials():
    """`CAIRN_CLIENT_AUTH`: `basic:USER:PASSWORD`, `token:SECRET`, or empty for none."""
    kind, _, rest = os.environ.get("CAIRN_CLIENT_AUTH", "").partition(":")
    if kind == "basic":
        user, _, password = rest.partition(":")
        return {"username": user, "password": password}
    if kind == "token":
        return {"auth_token": rest}
    return {}


def client(kind, server):
    if kind in ("chronos", "chronos2"):
        import chronos

        version = "v1" if kind == "chronos" else None
        return chronos.connect(server, scheduler_api_version=version, **credentials())
    if kind == "marathon":
        import marathon

        return marathon.MarathonClient(server, **credentials())
    if kind == "mesos-operator":
        from pymesos import MesosOperatorMasterDriver

        return MesosOperatorMasterDriver(server)
    raise SystemExit(f"unknown client kind {kind!r}")


def plain(value):
    """Model objects as the JSON the client would send; bytes as text."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "to_json"):
        return json.loads(value.to_json(minimal=False))
    return value


def main():
    kind, server, call = sys.argv[1:4]
    args = [json.loads(a) for a in sys.argv[4:]]
    try:
        c = client(kind, server)
        if call.isidentifier():
            result = getattr(c, call)(*args)
        else:
            scope = {"c": c, "A": args}
            if kind == "marathon":
                import marathon.models

                scope.update(vars(marathon.models))
            result = eval(call, scope)
        out = json.dumps(plain(result))
    except Exception as e:  # the test asserts on the client's own error
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(3)
    print(out)


main()
