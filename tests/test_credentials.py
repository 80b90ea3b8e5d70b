"""Client secret and certificate credentials obtain real tokens from a local token endpoint over TLS.

azure-identity's async credentials accept only an https authority, so the emulator is also served over
TLS with a self-signed certificate, which the credential's process trusts through ``SSL_CERT_FILE`` (the
standard OpenSSL variable, read when the TLS context is made). Nothing in the app is switched for tests:
the subprocess runs the production ``build_credential`` with the standard ``AZURE_*`` variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devhost.processes import free_port
from graph_emulator.server import GraphEmulator
from tests.certs import client_bundle, self_signed

SCRIPT = """
import asyncio, json, os
from shared.graph.client import build_credential
from shared.settings import load_settings

async def main():
    settings = load_settings(os.environ)
    credential = build_credential(settings)
    async with credential:
        token = await credential.get_token(settings.graph_scope)
    print(json.dumps({"credential": type(credential).__name__, "token": token.token}))

asyncio.run(main())
"""


@pytest.fixture
async def tls_authority(emulator: GraphEmulator, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The emulator's token endpoints over https on 127.0.0.1; yields (authority URL, CA file)."""
    cert, key = self_signed(tmp_path, "emulator", ip="127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(emulator.make_app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{port}", cert
    finally:
        await runner.cleanup()


async def _token_in_subprocess(env: dict[str, str], repo_root: Path) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        cwd=repo_root,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return dict(json.loads(out))


def _base_env(authority: str, ca: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "SSL_CERT_FILE": str(ca),
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "INVITE_REDIRECT_URL": "https://myapps.microsoft.com",
        "AZURE_AUTHORITY_HOST": authority,
        "AZURE_TENANT_ID": "72f988bf-0000-4000-8000-00000000e2e0",
        "AZURE_CLIENT_ID": "6d1b7d5e-3c5f-4c5b-9a7a-0f0e1d2c3b4a",
    }


async def test_client_secret_gets_a_token(
    tls_authority: tuple[str, Path], emulator: GraphEmulator, repo_root: Path
) -> None:
    """AZURE_CLIENT_SECRET: azure-identity's ClientSecretCredential posts a secret grant and gets a token."""
    authority, ca = tls_authority
    env = {**_base_env(authority, ca), "AZURE_CLIENT_SECRET": "local-test-secret"}
    result = await _token_in_subprocess(env, repo_root)
    assert result["credential"] == "ClientSecretCredential"
    grant = emulator.tokens[result["token"]]
    assert grant["client_id"] == env["AZURE_CLIENT_ID"]
    assert grant["resource"] == "https://graph.microsoft.com/.default"
    [call] = [r for r in emulator.requests if r.operation == "oauth-token"]
    assert call.path == f"/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token"
    assert call.query["credential"] == "secret"


async def test_certificate_gets_a_token_for_the_national_cloud(
    tls_authority: tuple[str, Path], emulator: GraphEmulator, repo_root: Path, tmp_path: Path
) -> None:
    """AZURE_CLIENT_CERTIFICATE_PATH: a signed client assertion, asking for the US Government scope."""
    authority, ca = tls_authority
    bundle = client_bundle(tmp_path)
    env = {**_base_env(authority, ca), "AZURE_CLIENT_CERTIFICATE_PATH": str(bundle), "GRAPH_CLOUD": "usgov"}
    result = await _token_in_subprocess(env, repo_root)
    assert result["credential"] == "CertificateCredential"
    assert emulator.tokens[result["token"]]["resource"] == "https://graph.microsoft.us/.default"
    [call] = [r for r in emulator.requests if r.operation == "oauth-token"]
    assert call.query["credential"] == "certificate"
