"""Operator API and live dashboard. See API.md; the OpenAPI document at /docs is the reference."""

from .app import ApiServer, app_from_config, create_app
from .auth import Role, TokenStore
from .config import ApiConfig, api_config

__all__ = ["ApiConfig", "ApiServer", "Role", "TokenStore", "api_config", "app_from_config", "create_app"]
