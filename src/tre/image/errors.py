"""The one error the image builders raise.

Invariant: every failure of `tre.image` reaches the caller as `ImageBuildError`
whose message names the problem and what to do about it (which engine, which
package, which file), never as a bare `CalledProcessError` or `OSError`.
"""

from __future__ import annotations


class ImageBuildError(RuntimeError):
    """An image could not be built or inspected; the message says why and what to do."""
