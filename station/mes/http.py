"""The MES over HTTP/JSON: `POST {base}/api/v1/check-in` and `POST {base}/api/v1/check-out`.

Built on the standard library (urllib), so the station needs no HTTP dependency. Transport
failures and 5xx replies raise MesUnavailable (retry later); 4xx replies raise MesRejected.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from station.mes.protocol import (
    CheckIn,
    CheckInDecision,
    CheckOut,
    CheckOutReceipt,
    MesProtocolError,
    MesRejected,
    MesUnavailable,
)

DEFAULT_TIMEOUT_S = 5.0


class HttpMes:
    """A `Mes` reached at `base_url` (e.g. `http://127.0.0.1:8765`)."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"MES URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        # no proxy: a proxy from the environment must not sit between a station and its MES
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def check_in(self, request: CheckIn) -> CheckInDecision:
        body = {
            "serial": request.serial,
            "operation": request.operation,
            "station": request.station,
            "action": request.action,
            "reason_code": request.reason_code,
        }
        return CheckInDecision.from_json(self._post("/api/v1/check-in", body))

    def check_out(self, checkout: CheckOut) -> CheckOutReceipt:
        reply = self._post(
            "/api/v1/check-out",
            checkout.to_json(),
            headers={"Idempotency-Key": checkout.idempotency_key},
        )
        return CheckOutReceipt.from_json(reply)

    def unit(self, serial: str) -> dict[str, Any]:
        """The MES's record of a unit: lot, route position, attempts, final disposition."""
        return self._request("GET", f"/api/v1/units/{urllib.parse.quote(serial)}", None, {})

    def lot_view(self, lot_id: str) -> dict[str, Any]:
        """The MES's record of a lot: product, route, hold and every unit's record."""
        return self._request("GET", f"/api/v1/lots/{urllib.parse.quote(lot_id)}", None, {})

    def lot_queue(self, lot_id: str, operation: str) -> list[str]:
        """Serials of lot `lot_id` the MES has waiting for `operation`, in lot order."""
        quoted = f"{urllib.parse.quote(lot_id)}/queue/{urllib.parse.quote(operation)}"
        reply = self._request("GET", f"/api/v1/lots/{quoted}", None, {})
        serials = reply.get("serials")
        if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
            raise MesProtocolError(f"MES lot queue of {lot_id}: serials = {serials!r}")
        return serials

    def check_outs(self) -> list[dict[str, Any]]:
        """Every check-out the MES applied, in the order applied."""
        reply = self._request("GET", "/api/v1/check-outs", None, {})
        applied = reply.get("check_outs")
        if not isinstance(applied, list):
            raise MesProtocolError(f"MES check-outs: {applied!r} is not a list")
        return applied

    def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return self._request("POST", path, body, headers or {})

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            message = _error_message(err)
            err.close()
            if err.code >= 500:
                raise MesUnavailable(
                    f"MES at {url} out of service (HTTP {err.code}): {message}"
                ) from None
            raise MesRejected(err.code, message) from None
        except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out
            reason = getattr(err, "reason", err)
            raise MesUnavailable(f"MES at {url} unreachable: {reason}") from err
        try:
            reply = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise MesProtocolError(f"MES at {url} answered non-JSON: {raw[:80]!r}") from err
        if not isinstance(reply, dict):
            raise MesProtocolError(f"MES at {url} answered {type(reply).__name__}, not an object")
        return reply


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        reply = json.loads(err.read())
    except (OSError, ValueError):
        return err.reason if isinstance(err.reason, str) else str(err.code)
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        return reply["error"]
    return str(reply)[:200]
