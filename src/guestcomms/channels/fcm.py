"""Firebase Cloud Messaging: push to an app or browser device token through the HTTP v1 API.

Authentication is a Google service account (the JSON file Firebase hands out): we sign an
RS256 JWT (``iss`` = the account's email, ``scope`` = firebase.messaging, ``aud`` = its token
URI, one hour of validity) with its private key, exchange it at the token URI for an OAuth2
access token (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``), and cache that token
until shortly before it expires. One :class:`asyncio.Lock` makes concurrent sends fetch it once.

Request: ``POST {base}/v1/projects/{project_id}/messages:send`` with ``Authorization: Bearer
<access token>`` and ``{"message": {"token", "notification": {"title", "body"}, "data",
"android": {"ttl", "priority"}, "webpush": {"headers", "fcm_options"}}}``. A 401 means the
token was revoked or expired early: it is dropped and the send is tried once more with a new
one.

Answer: ``200 {"name": "projects/<project>/messages/<id>"}``; the name is the provider id.
Errors are ``{"error": {"code", "message", "status", "details": [{"errorCode"}]}}``, classified
by the FCM error code (else the gRPC status) through :data:`FCM_ERRORS`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from guestcomms.channels.base import (
    Capabilities,
    CredentialsError,
    OutgoingPush,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.http import (
    HttpProvider,
    HttpRequest,
    HttpResponse,
    common_options,
    retry_after_seconds,
)
from guestcomms.domain.enums import Channel
from guestcomms.errors import ConfigError

__all__ = [
    "FCM_ERRORS",
    "FCM_SCOPE",
    "GOOGLE_TOKEN_URI",
    "FcmProvider",
    "ServiceAccount",
    "make_assertion",
]

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600  # the signed JWT's validity; Google accepts at most one hour
DEFAULT_TOKEN_SECONDS = 3600  # an access token's lifetime when the answer omits expires_in
TOKEN_REFRESH_MARGIN_SECONDS = 300  # fetch a new token this long before the old one expires
_TOKEN_REFUSALS = frozenset({400, 401, 403})  # invalid_grant / invalid_client: our account

# FCM's error code (details[].errorCode), else the gRPC status (error.status), -> the error
# class and our code. Anything not listed is classified by HTTP status as the base does.
FCM_ERRORS: Mapping[str, tuple[type[ProviderError], str]] = {
    # the app was uninstalled or the token expired: remove the token from the contact
    "UNREGISTERED": (PermanentProviderError, "subscription_expired"),
    "NOT_FOUND": (PermanentProviderError, "subscription_expired"),
    # the token belongs to another Firebase project: also never deliverable for us
    "SENDER_ID_MISMATCH": (PermanentProviderError, "sender_id_mismatch"),
    # a malformed message or token
    "INVALID_ARGUMENT": (PermanentProviderError, "invalid_argument"),
    # APNs certificate or web push credentials rejected: fix the Firebase project settings
    "THIRD_PARTY_AUTH_ERROR": (CredentialsError, "third_party_auth_error"),
    "UNAUTHENTICATED": (CredentialsError, "unauthenticated"),
    "PERMISSION_DENIED": (CredentialsError, "permission_denied"),
    # the project's or the device's send quota: wait for Retry-After
    "QUOTA_EXCEEDED": (RateLimitedError, "quota_exceeded"),
    "RESOURCE_EXHAUSTED": (RateLimitedError, "quota_exceeded"),
    # FCM overloaded or failing: retry later
    "UNAVAILABLE": (TransientProviderError, "unavailable"),
    "INTERNAL": (TransientProviderError, "internal"),
}


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The parts of a Google service-account key that FCM needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    project_id: str
    token_uri: str = GOOGLE_TOKEN_URI
    private_key_id: str | None = None  # the JWT header's ``kid``, when known

    @classmethod
    def from_info(cls, info: Mapping[str, Any], *, token_uri: str | None = None) -> Self:
        """Parse the service-account JSON (as a mapping); ``token_uri`` overrides its own.

        Raises :class:`ConfigError` naming a missing field or a key that is not RSA PEM.
        """
        fields: dict[str, str] = {}
        for key in ("client_email", "private_key", "project_id"):
            value = info.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"fcm: service_account_json lacks {key!r}")
            fields[key] = value
        try:
            private_key = serialization.load_pem_private_key(
                fields["private_key"].encode("utf-8"), password=None
            )
        except (ValueError, TypeError) as e:
            raise ConfigError("fcm: service_account_json 'private_key' is not a PEM key") from e
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ConfigError("fcm: service_account_json 'private_key' must be an RSA key")
        key_id = info.get("private_key_id")
        return cls(
            client_email=fields["client_email"],
            private_key=private_key,
            project_id=fields["project_id"],
            token_uri=token_uri or str(info.get("token_uri") or GOOGLE_TOKEN_URI),
            private_key_id=key_id if isinstance(key_id, str) and key_id else None,
        )


def make_assertion(account: ServiceAccount, *, issued_at: int) -> str:
    """The RS256-signed JWT that ``account`` trades for an access token (RFC 7523)."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {
        "iss": account.client_email,
        "scope": FCM_SCOPE,
        "aud": account.token_uri,
        "iat": issued_at,
        "exp": issued_at + ASSERTION_SECONDS,
    }
    signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}"
    signature = account.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{_b64url(signature)}"


@dataclass(frozen=True, slots=True)
class _AccessToken:
    value: str
    refresh_at: float  # on the provider's clock (monotonic seconds)


class FcmProvider(HttpProvider[OutgoingPush]):
    """Send push notifications through Firebase Cloud Messaging's HTTP v1 API."""

    name = "fcm"
    channel = Channel.PUSH
    capabilities = Capabilities(max_batch_size=1)
    default_base_url = "https://fcm.googleapis.com"

    def __init__(
        self,
        *,
        service_account: ServiceAccount,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        """``options`` are :class:`HttpProvider`'s; ``clock`` (monotonic seconds) decides
        when the cached access token is due for renewal."""
        super().__init__(**options)
        self.account = service_account
        self._clock = clock
        self._url = f"{self.base_url}/v1/projects/{service_account.project_id}/messages:send"
        self._token: _AccessToken | None = None
        self._token_lock = asyncio.Lock()
        self._fetches_finished = 0  # so a send waiting on the lock sees a fetch end meanwhile
        self._fetch_error: ProviderError | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, session: aiohttp.ClientSession | None
    ) -> Self:
        """Build from ``{"service_account_json": <JSON string or mapping>, "token_uri"?,
        "base_url"?, "timeout_seconds"?, "max_concurrency"?}``."""
        raw = config.get("service_account_json")
        if isinstance(raw, str) and raw:
            try:
                raw = json.loads(raw)
            except ValueError as e:
                raise ConfigError("fcm: setting 'service_account_json' is not JSON") from e
        if not isinstance(raw, Mapping):
            raise ConfigError("fcm: missing setting 'service_account_json'")
        token_uri = config.get("token_uri")
        if token_uri is not None and not isinstance(token_uri, str):
            raise ConfigError("fcm: setting 'token_uri' must be a string")
        account = ServiceAccount.from_info(raw, token_uri=token_uri or None)
        return cls(
            service_account=account, session=session, **common_options(config, provider=cls.name)
        )

    async def send(self, item: OutgoingPush) -> SendReceipt:
        """Send with a cached access token; on a 401 renew the token and try once more."""
        request = self.build_request(item)
        token = await self.access_token()
        response = await self.post(_with_bearer(request, token))
        if response.status == 401:
            self._forget_token(token)
            token = await self.access_token()
            response = await self.post(_with_bearer(request, token))
        return self.parse_response(item, response)

    def build_request(self, item: OutgoingPush) -> HttpRequest:
        """The messages:send request, without its Authorization (``send`` adds the token).

        Raises :class:`PermanentProviderError` (``invalid_subscription``) without a token.
        """
        token = item.subscription.fcm_token
        if not token:
            raise PermanentProviderError(
                "the push subscription has no FCM token", code="invalid_subscription"
            )
        data = dict(item.data)
        if item.url:
            data.setdefault("url", item.url)  # apps read the link from data
        message: dict[str, Any] = {
            "token": token,
            "notification": {"title": item.title, "body": item.body},
            "android": {
                "ttl": f"{max(item.ttl_seconds, 0)}s",
                "priority": "HIGH" if item.urgency == "high" else "NORMAL",
            },
            "webpush": {"headers": {"TTL": str(max(item.ttl_seconds, 0)),
                                    "Urgency": item.urgency}},
        }  # fmt: skip
        if data:
            message["data"] = data
        if item.url and item.url.startswith("https://"):  # FCM accepts only HTTPS links
            message["webpush"]["fcm_options"] = {"link": item.url}
        return HttpRequest(
            "POST", self._url, headers={"Accept": "application/json"}, json={"message": message}
        )

    def extract_message_id(self, item: OutgoingPush, response: HttpResponse) -> str | None:
        """FCM's id is the ``name`` of the created message."""
        payload = response.json()
        name = payload.get("name") if isinstance(payload, dict) else None
        return name if isinstance(name, str) else None

    def classify(self, response: HttpResponse) -> ProviderError:
        """Classify by FCM's error code, else its gRPC status (:data:`FCM_ERRORS`), else by
        HTTP status as the base does (a bare 404 still means the token is gone)."""
        fcm_code = _fcm_error_code(response)
        entry = FCM_ERRORS.get(fcm_code or "")
        if entry is None and response.status == 404:
            entry = FCM_ERRORS["NOT_FOUND"]
        if entry is None:
            return super().classify(response)
        error_class, code = entry
        detail = f"HTTP {response.status} {fcm_code or ''}: {self.error_message(response)}"
        if code == "subscription_expired":
            detail += "; the device token is no longer valid: remove it from the contact"
        if issubclass(error_class, RateLimitedError):
            return error_class(detail, retry_after_seconds=retry_after_seconds(response), code=code)
        return error_class(detail, code=code)

    # -- the access token ----------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid OAuth2 access token: the cached one, or one fetched now (once, however
        many sends ask at the same time).

        Raises :class:`CredentialsError` when the token endpoint refuses the service account,
        and the base classification's errors when it fails otherwise.
        """
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        finished_before = self._fetches_finished
        async with self._token_lock:
            token = self._token
            if token is not None and self._clock() < token.refresh_at:
                return token.value
            if self._fetches_finished != finished_before and self._fetch_error is not None:
                raise self._fetch_error  # a fetch failed while we waited: do not hammer
            try:
                self._token = await self._fetch_token()
            except ProviderError as e:
                self._fetch_error = e
                raise
            else:
                self._fetch_error = None
            finally:
                self._fetches_finished += 1
            return self._token.value

    def _forget_token(self, value: str) -> None:
        # Only the token that was refused: another send may already have renewed it.
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch_token(self) -> _AccessToken:
        started = self._clock()
        assertion = make_assertion(self.account, issued_at=int(time.time()))
        request = HttpRequest(
            "POST",
            self.account.token_uri,
            headers={"Accept": "application/json"},
            form=[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)],
        )
        response = await self.post(request)
        if not 200 <= response.status < 300:
            if response.status in _TOKEN_REFUSALS:
                raise CredentialsError(
                    f"the token endpoint refused the service account {self.account.client_email}"
                    f" (HTTP {response.status}): {self.error_message(response)}",
                    code="token_refused",
                )
            raise super().classify(response)
        payload = response.json()
        value = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(value, str) or not value:
            raise TransientProviderError("the token endpoint answered without an access_token")
        lifetime = payload.get("expires_in", DEFAULT_TOKEN_SECONDS)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_SECONDS
        margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)
        return _AccessToken(value, refresh_at=started + lifetime - margin)


def _with_bearer(request: HttpRequest, token: str) -> HttpRequest:
    headers = {**request.headers, "Authorization": f"Bearer {token}"}
    return dataclasses.replace(request, headers=headers)


def _fcm_error_code(response: HttpResponse) -> str | None:
    """details[].errorCode (the FcmError), else error.status, else None."""
    payload = response.json()
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and isinstance(detail.get("errorCode"), str):
                return str(detail["errorCode"])
    status = error.get("status")
    return status if isinstance(status, str) else None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_json(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))
