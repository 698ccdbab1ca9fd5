"""Azure composition root: the FunctionApp and its blueprints, nothing else.

Each flow is one Blueprint module in functions/ (thin trigger adapters); business rules live in shared/.
The Azure host indexes `app`; local/host reads the same functions and bindings.
"""

import azure.functions as func

from functions import BLUEPRINTS


def build_app() -> func.FunctionApp:
    """A FunctionApp with every flow. A factory because an app can be indexed only once (the local host and
    tests build a fresh one per run)."""
    # HTTP routes need a function key unless a blueprint says otherwise (Graph's webhook gets its key in the
    # notificationUrl's `code` query parameter).
    function_app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in BLUEPRINTS:
        function_app.register_functions(blueprint)
    return function_app


app = build_app()
