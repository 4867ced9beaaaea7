"""Settings of a REST-backed runtime, as BoxLite names them: where the server is
(``BoxliteRestOptions``) and how to prove who you are (a ``Credential``, such as
``ApiKeyCredential``). They are plain values: making one contacts nothing, and no ``repr`` shows
a key or a token."""

from __future__ import annotations

import abc
import os
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["AccessToken", "ApiKeyCredential", "BoxliteRestOptions", "Credential"]


class AccessToken:
    """A bearer token and when it expires (seconds since the epoch; ``None``: never)."""

    __slots__ = ("_expires_at", "_token")

    def __init__(self, token: str, expires_at: float | None = None) -> None:
        self._token = token
        self._expires_at = expires_at

    @property
    def token(self) -> str:
        return self._token

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    def __repr__(self) -> str:
        return f"AccessToken(token=***, expires_at={self._expires_at!r})"


class Credential(abc.ABC):
    """Anything that gives a bearer token for each request (an API key, an OAuth client)."""

    @abc.abstractmethod
    def get_token(self) -> AccessToken: ...


class ApiKeyCredential:
    """An API key: a token that never expires. A virtual subclass of ``Credential``."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError("an API key must be a non-empty string")
        self._key = key

    def get_token(self) -> AccessToken:
        return AccessToken(self._key)

    @staticmethod
    def from_env() -> ApiKeyCredential | None:
        """The key in ``$BOXLITE_API_KEY``; ``None`` when it is unset or empty."""
        key = os.environ.get("BOXLITE_API_KEY")
        return ApiKeyCredential(key) if key else None

    def __repr__(self) -> str:
        return "ApiKeyCredential(***)"


Credential.register(ApiKeyCredential)


class BoxliteRestOptions:
    """Where a REST-backed runtime sends its requests: ``{url}/v1/{path_prefix}/...`` (the prefix
    segment left out when unset)."""

    __slots__ = ("credential", "path_prefix", "url")

    def __init__(self, url: str, credential: Credential | ApiKeyCredential | None = None, path_prefix: str | None = None) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the REST URL must be http:// or https:// and name a host, not {url!r}")
        # Said without the URL itself, which may hold a secret.
        if parts.username is not None or parts.password is not None:
            raise ConfigError("the REST URL must not hold a user or password: pass a credential (ApiKeyCredential) instead")
        if parts.query or parts.fragment or "?" in url or "#" in url:
            raise ConfigError("the REST URL must not have a query or a fragment: it is the server's root (http://host:port[/path])")
        if credential is not None and not isinstance(credential, Credential):  # ApiKeyCredential is one (registered)
            raise TypeError(f"credential must be a Credential (such as ApiKeyCredential), not {type(credential).__name__}")
        self.url = url.rstrip("/")
        self.credential = credential
        self.path_prefix = (path_prefix.strip("/") or None) if path_prefix is not None else None

    @staticmethod
    def from_env() -> BoxliteRestOptions:
        """From ``$BOXLITE_REST_URL`` (required), ``$BOXLITE_API_KEY`` and
        ``$BOXLITE_REST_PATH_PREFIX``."""
        url = os.environ.get("BOXLITE_REST_URL")
        if not url:
            raise ConfigError("BOXLITE_REST_URL is not set: it names the REST server (http://host:port)")
        return BoxliteRestOptions(url, ApiKeyCredential.from_env(), os.environ.get("BOXLITE_REST_PATH_PREFIX") or None)

    def __repr__(self) -> str:
        return f"BoxliteRestOptions(url={self.url!r}, credential={self.credential!r}, path_prefix={self.path_prefix!r})"
