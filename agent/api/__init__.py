"""Operator API and live dashboard. See API.md; the OpenAPI document at /docs is the reference.

The API runs in its own process (agent/api/front.py, `create_app` in agent/api/app.py), fed by
the control process through agent/api/bridge.py and supervised by agent/api/process.py. This
package's top level stays light: the control process never imports FastAPI or uvicorn.
"""

from .auth import Role, TokenStore
from .config import ApiConfig, api_config

__all__ = ["ApiConfig", "Role", "TokenStore", "api_config"]
