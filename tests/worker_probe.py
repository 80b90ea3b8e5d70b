"""Index a function app through the Functions Python worker library; print what it reports as JSON.

Run as ``python tests/worker_probe.py <function app directory>`` in a fresh interpreter, the way the
Functions host starts a worker. It sends the library (``azure_functions_runtime``, Python 3.13+) the
same two requests the host sends at start-up, ``WorkerInitRequest`` then ``FunctionsMetadataRequest``:
on init the library imports ``function_app.py``, calls ``app.get_functions()`` and loads every function
into its registry (which checks each parameter against its binding), and the metadata response lists
every function with its bindings exactly as the host receives them.

The host speaks gRPC; the library only builds the messages it returns through the ``protos`` object the
host's proxy worker hands it. A stand-in with plain message classes takes that place here, so no gRPC
stack is needed. Exit status 1 (and the worker's exception on stderr) when the worker refuses the app.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path
from typing import Any


class Message:
    """Stand-in for a protobuf message: keeps the fields it is built with as attributes."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def stand_in_protos() -> types.SimpleNamespace:
    """The message types the worker library builds, with the enum values it compares against."""
    names = (
        "BindingInfo",
        "FunctionEnvironmentReloadResponse",
        "FunctionLoadResponse",
        "FunctionMetadataResponse",
        "InvocationResponse",
        "RpcException",
        "RpcFunctionMetadata",
        "RpcRetryOptions",
        "StatusResult",
        "WorkerInitResponse",
        "WorkerMetadata",
    )
    protos = types.SimpleNamespace(**{name: type(name, (Message,), {}) for name in names})
    # Values of FunctionRpc.proto's enums (BindingInfo.Direction, BindingInfo.DataType, StatusResult.Status).
    for name, value in {"in": 0, "out": 1, "inout": 2, "undefined": 0, "string": 1, "binary": 2, "stream": 3}.items():
        setattr(protos.BindingInfo, name, value)
    for name, value in {"Failure": 0, "Success": 1, "Cancelled": 2}.items():
        setattr(protos.StatusResult, name, value)
    return protos


async def index(app_dir: Path) -> list[dict[str, Any]]:
    from azure_functions_runtime import handle_event  # imported here, after main() has set sys.path

    protos = stand_in_protos()
    init = Message(capabilities={}, function_app_directory=str(app_dir))
    request = Message(request=Message(worker_init_request=init), properties={"host": "127.0.0.1", "protos": protos})
    response = await handle_event.worker_init_request(request)
    if response.result.status != protos.StatusResult.Success:
        print(response.result.exception.message, file=sys.stderr)
        print(response.result.exception.stack_trace, file=sys.stderr)
        raise SystemExit(1)
    metadata = await handle_event.functions_metadata_request(None)
    return [
        {
            "name": fn.name,
            "directory": fn.directory,
            "script_file": fn.script_file,
            "language": fn.language,
            "properties": dict(fn.properties),
            "bindings": {name: {"type": b.type, "direction": b.direction} for name, b in fn.bindings.items()},
            "raw_bindings": [json.loads(raw) for raw in fn.raw_bindings],
        }
        for fn in metadata.function_metadata_results
    ]


def main() -> None:
    app_dir = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(app_dir))  # the host starts the worker with the app's root on sys.path
    print(json.dumps(asyncio.run(index(app_dir))))


if __name__ == "__main__":
    main()
