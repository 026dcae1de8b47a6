"""An agent module with a bug a user's module often has: it reads a setting that is not there at import.

Loaded as the entrypoint `raises_on_import:agent`; importing it raises KeyError.
"""

from __future__ import annotations

import os

from pydantic_ai import Agent

API_URL = os.environ["SUPPORT_API_URL_THAT_IS_NOT_SET"]

agent = Agent("test", name="never_built", instructions=f"Use {API_URL}.")
