"""The review service's web layer (`tre-review`): checker and researcher pages through the
hub's proxy, and a JSON API for workspaces and browsers.

Who acts is decided by the hub alone (HubOAuth for browsers, a workspace server's Hub
token resolved as the audit service does); what they may do, by the custom
`custom:review:*` scopes and then by the domain (`tre.review.ReviewService`).
"""

from .app import make_app, make_context, serve
from .base import ReviewWeb

__all__ = ["ReviewWeb", "make_app", "make_context", "serve"]
