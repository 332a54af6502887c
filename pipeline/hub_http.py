"""Every Hub request with a bounded timeout, and a revision resolved on the Hub itself.

huggingface_hub sends most API calls (``model_info``, ``create_commit``, …) with no timeout: a
Hub that accepts the connection and never answers hangs the process. :func:`bound_timeouts`
installs a session factory whose requests default to ``settings.hub_timeout()`` seconds (to
connect, and between bytes of the answer; calls that pass their own timeout keep it).
:func:`resolve_revision` asks the Hub which commit a revision is now, so ``convert verify`` never
mistakes its local cache for the Hub. This module never reads or prints the token.
"""

from __future__ import annotations

from typing import Any

from pipeline import settings
from pipeline.errors import PipelineError, PublishError

_installed = False


def bound_timeouts() -> None:
    """Make every request huggingface_hub sends from now on time out (idempotent)."""
    global _installed
    if _installed:
        return
    import requests
    from huggingface_hub import configure_http_backend
    from huggingface_hub.utils._http import _default_backend_factory

    class BoundedSession(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = settings.hub_timeout()
            return super().request(method, url, *args, **kwargs)

    def factory() -> requests.Session:
        session = BoundedSession()
        for prefix, adapter in _default_backend_factory().adapters.items():  # huggingface_hub's own adapters
            session.mount(prefix, adapter)
        return session

    configure_http_backend(backend_factory=factory)
    _installed = True


class HubUnreachable(PipelineError):
    """The Hub did not answer (connection refused, timed out, 5xx): nothing could be checked."""


def resolve_revision(repo_id: str, revision: str) -> str:
    """The commit ``revision`` (branch, tag or sha) of ``repo_id`` points to on the Hub now.

    Raises:
        PublishError: no such repo or revision.
        HubUnreachable: the Hub cannot be reached or answered with a server error.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError


    bound_timeouts()
    try:
        return str(HfApi().model_info(repo_id, revision=revision, files_metadata=False).sha)
    except RepositoryNotFoundError:
        raise PublishError(f"{repo_id}: no such repo on the Hub (or no access to it)", repo_id=repo_id) from None
    except RevisionNotFoundError:
        raise PublishError(f"{repo_id} has no revision {revision!r} on the Hub", repo_id=repo_id) from None
    except (HfHubHTTPError, OSError, ValueError) as e:  # requests' connection errors and timeouts are OSErrors
        status = getattr(getattr(e, "response", None), "status_code", None)
        why = f"HTTP {status}" if status else ("timed out after "
                                               f"{settings.hub_timeout():g} s" if "Timeout" in type(e).__name__
                                               else f"{type(e).__name__}")
        raise HubUnreachable(f"{repo_id}@{revision}: cannot reach the Hub at {constants.ENDPOINT} to resolve the "
                             f"revision ({why}); nothing was verified", hint="check the network and HF_ENDPOINT, "
                             "or pass --offline to verify the copy in the local cache") from None
