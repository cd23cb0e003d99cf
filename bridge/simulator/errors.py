"""8x8's documented error bodies (spec §1.1, §1.2, §2.2, §4.2), per API and route.

Handlers raise `ApiProblem`; the server turns it into the response. Each body copies the
documented shape; the texts fill the documented templates with the actual ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from aiohttp import web

from bridge.simulator.ids import reference_id

# Which documented family of error bodies a route uses.
Style = Literal["gateway", "chat-v2", "token"]

PROBLEM_JSON = "application/problem+json"


class ApiProblem(Exception):
    """An error answer, ready to send."""

    def __init__(
        self,
        status: int,
        body: Mapping[str, Any],
        *,
        content_type: str = PROBLEM_JSON,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {body.get('message') or body}")
        self.status = status
        self.body = dict(body)
        self.content_type = content_type
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.body, separators=(",", ":")).encode("utf-8"),
            content_type=self.content_type,
            headers=self.headers,
        )


def _apigee_fault(status: int, faultstring: str, errorcode: str) -> ApiProblem:
    body = {"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}
    return ApiProblem(status, body, content_type="application/json")


def unauthorized(style: Style) -> ApiProblem:
    if style == "gateway":
        body = {
            "message": "Access Denied",
            "errors": [{"message": "Access Denied", "code": "access_denied"}],
            "referenceId": reference_id(),
        }
        return ApiProblem(401, body)
    if style == "token":
        # Apigee's answer to a wrong client id or secret, in the documented token error shape.
        return ApiProblem(401, {"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"})
    return _apigee_fault(401, "Invalid Access Token", "keymanagement.service.invalid_access_token")


def forbidden(style: Style, *, tenant_id: str, customer_id: str) -> ApiProblem:
    if style == "gateway":
        detail = (
            f"Header X-8x8-Tenant doesn't match tenant information for customerId={customer_id}"
        )
    else:
        detail = f"Tenant {tenant_id} does not belong to customer {customer_id}."
    return ApiProblem(
        403, {"message": "The tenant does not belong to customer.", "errors": [detail]}
    )


def not_found(style: Style, route: str, resource_type: str, resource_id: str) -> ApiProblem:
    if route == "jwk":
        body: dict[str, Any] = {
            "type": "ClientError",
            "title": "Resource not found.",
            "status": 404,
            "detail": "Resource may not exist or is not accessible.",
            "resourceType": "JWKPublic",
            "resourceId": resource_id,
            "instance": "ResourceNotFound",
        }
        return ApiProblem(404, body)
    text = f"Entity of type {resource_type} with id {resource_id} was not found."
    if style == "gateway" and route == "typing":
        body = {
            "message": "Resource not found",
            "errors": [{"code": "resource_not_found", "message": text}],
        }
        return ApiProblem(404, body)
    message = f"Resource of type {resource_type} with id {resource_id} was not found."
    return ApiProblem(404, {"message": message, "errors": [message]})


def bad_request(
    style: Style,
    route: str,
    message: str,
    *,
    field: str = "",
    value: Any = None,
    code: str = "invalid_parameter",
) -> ApiProblem:
    """A 400 in the shape the route documents. `message` says what is wrong, naming `field`."""
    if style == "token":
        return ApiProblem(400, {"ErrorCode": "invalid_request", "Error": message})
    if style == "chat-v2":
        if route == "channels" and code != "invalid_json_object":
            item = {"code": code, "message": message}
            validations = [{"field": field, "value": value, **item}]
            return ApiProblem(
                400, {"message": message, "errors": [item], "validations": validations}
            )
        return ApiProblem(400, {"message": "Constraint Violation", "errors": [message]})
    if route == "send_message":
        # BadRequestProblem: `errors` is an object here, not a list (spec §4.2).
        body: dict[str, Any] = {
            "message": message,
            "errors": {"code": "invalid_json_object", "message": message},
            "referenceId": reference_id(),
        }
        return ApiProblem(400, body)
    generic: dict[str, Any] = {"message": message, "errors": [{"code": code, "message": message}]}
    if route == "typing":
        generic["referenceId"] = reference_id()
    return ApiProblem(400, generic)


def server_error(style: Style, status: int = 500, message: str | None = None) -> ApiProblem:
    text = message or f"Could not process this request due to an error ({status})."
    if style == "gateway":
        return ApiProblem(
            status,
            {"message": "Internal error.", "errors": [{"code": "internal_error", "message": text}]},
        )
    return ApiProblem(status, {"message": text, "errors": [text], "referenceId": reference_id()})


def too_many_requests(style: Style) -> ApiProblem:
    # Undocumented for these APIs (spec §6.11): Apigee's quota answer on v2 and the token,
    # the gateway's generic shape on the gateway.
    if style == "gateway":
        text = "Too many requests."
        return ApiProblem(
            429, {"message": text, "errors": [{"code": "too_many_requests", "message": text}]}
        )
    return _apigee_fault(429, "Rate limit quota violation.", "policies.ratelimit.QuotaViolation")


def for_status(
    style: Style,
    route: str,
    status: int,
    *,
    tenant_id: str,
    customer_id: str,
    retry_after_s: float | None = None,
) -> ApiProblem:
    """The answer an injected fault gives: 8x8's documented body for `status` on `route`."""
    if status == 400:
        problem = bad_request(style, route, "Injected fault: invalid request.")
    elif status == 401:
        problem = unauthorized(style)
    elif status == 403:
        problem = forbidden(style, tenant_id=tenant_id, customer_id=customer_id)
    elif status == 404:
        problem = not_found(style, route, "Resource", "injected-fault")
    elif status == 429:
        problem = too_many_requests(style)
    elif status >= 500:
        problem = server_error(style, status, "Injected fault.")
    else:
        text = f"Injected fault ({status})."
        problem = ApiProblem(status, {"message": text, "errors": [text]})
    if retry_after_s is not None:
        problem.headers["Retry-After"] = str(math.ceil(retry_after_s))
    return problem
