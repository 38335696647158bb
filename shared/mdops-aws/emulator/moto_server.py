"""moto_server with DynamoDB requests serialized.

moto serves requests on many threads but its DynamoDB backend takes no lock: a conditional write
checks and then sets, and a failing TransactWriteItems restores a deep copy of the whole table
taken when it started, wiping writes other threads made meanwhile. Real DynamoDB is atomic per
item and per transaction, and mdops's correctness rests on that (exactly one of two racing
writers wins). Serializing DynamoDB requests makes the emulator keep that promise; every other
service (SQS long polling above all) stays multi-threaded.

Same arguments as moto_server: -H HOST -p PORT.
"""

import argparse
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

DYNAMODB_TARGET_PREFIX = "DynamoDB_"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
    dynamodb = threading.Lock()

    def serialized(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            with dynamodb:
                # Read the whole body inside the lock: the state change happens in the call.
                return [b"".join(app(environ, start_response))]
        return app(environ, start_response)

    run_simple(
        args.host,
        args.port,
        serialized,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
