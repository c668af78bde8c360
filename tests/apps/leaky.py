"""An app whose module fails to import with its own password in the exception (a careless
error message), or whose processor fails with it; neither may reach the output.
``TEST_SECRET`` is the password; ``TEST_APP_ID`` and ``TEST_INPUT`` as in eos_copy.py."""

from __future__ import annotations

import os

import eokafka

secret = os.environ.get("TEST_SECRET", "leaky-secret")
# TEST_SECRET_IN_APP=0: only the command line's --config carries the password.
in_app = {"sasl.password": secret} if os.environ.get("TEST_SECRET_IN_APP", "1") == "1" else {}
app = eokafka.App(
    os.environ.get("TEST_APP_ID", "leaky"), config={"sasl.username": "bob", **in_app}
)
if os.environ.get("TEST_LEAK") == "import":
    raise RuntimeError(f"could not log in as bob with password {secret}")


@app.processor(os.environ.get("TEST_INPUT", "leaky-in"))
def process(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    raise RuntimeError(f"bad record; we were using {secret}")
