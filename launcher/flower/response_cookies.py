"""Flower's HTTP clients look for cookies only in a response that sets one.

    install()   # in a process whose Flower clients call the SuperLink or a SuperNode (each call once is enough)

Every Fleet and Runtime API call of Flower 1.41-1.42 goes through an ``httpx.Client`` (ProtobufClient's), and
httpx hands every response to its cookie jar: it wraps the response and its request for ``http.cookiejar``, copying
the request's headers one lookup at a time (a scan of all headers per header). Flower's calls set no cookies and
carry ~10 headers (node authentication's among them), so that copy was ~8% of a client process's CPU in a round
(py-spy --gil, 20 clients: 11 of its 137 samples) for nothing. Here a client's jar goes through those steps only
when the response has a ``Set-Cookie`` header: whatever a server sets is kept as before.
tests/test_flower_internals.py pins the httpx name this replaces and that Flower's clients are httpx clients.
"""

from __future__ import annotations

import httpx
import httpx._client as httpx_client


class ResponseCookies(httpx.Cookies):
    """httpx's cookies, a response read into the jar only when it sets a cookie."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


def install() -> None:
    """Every httpx client made in this process from now on (Flower's included) keeps its cookies in ResponseCookies."""
    httpx_client.Cookies = ResponseCookies
