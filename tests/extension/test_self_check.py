"""The extension refuses to run a server that does not use all of its controls."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from tests.extension.conftest import image_config

pytestmark = pytest.mark.security


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("ServerApp", "authorizer_class", "jupyter_server.auth.authorizer.AllowAllAuthorizer"),
        ("ServerApp", "authorizer_class", "jupyterhub.singleuser.extension.JupyterHubAuthorizer"),
        ("ServerApp", "contents_manager_class",
         "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager"),
        ("ServerApp", "kernel_websocket_connection_class",
         "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection"),
        ("ServerApp", "terminals_enabled", True),
        ("ContentsManager", "files_handler_class",
         "jupyter_server.base.handlers.AuthenticatedFileHandler"),
        ("TreContentsManager", "files_handler_class", "jupyter_server.files.handlers.FilesHandler"),
    ],
)  # fmt: skip
def test_a_weakened_server_does_not_start(jp_configurable_serverapp, tre_env, section, key, value):
    config = image_config()
    config.setdefault(section, {})[key] = value
    with pytest.raises(SystemExit) as info:
        jp_configurable_serverapp(config=Config(config))
    assert info.value.code == 1


def test_bad_settings_stop_the_server(jp_configurable_serverapp, tre_env, monkeypatch):
    monkeypatch.setenv("TRE_MAX_CONTENT_BYTES", "lots")
    with pytest.raises(Exception, match="TRE_MAX_CONTENT_BYTES='lots'"):
        jp_configurable_serverapp(config=Config(image_config()))


@pytest.mark.parametrize(
    "extra_config", [{"ServerApp": {"jpserver_extensions": {"jupyter_tre_lab": False}}}]
)
async def test_without_the_extension_everything_is_denied(jp_fetch, jp_serverapp):
    assert not jp_serverapp.extension_manager.extension_apps.get("jupyter_tre_lab")
    for parts in [("api", "contents"), ("api", "kernels"), ("api", "kernelspecs")]:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(*parts)
        assert info.value.code == 403


async def test_context_endpoint(jp_fetch):
    response = await jp_fetch("tre", "context")
    assert json.loads(response.body) == {
        "project": "demo", "permit": "demo-permit-1", "purpose": "Research",
        "expiry": "2027-12-31", "datasets": ["emr@1", "imaging@2"], "terminals_allowed": False,
    }  # fmt: skip


async def test_context_endpoint_needs_authentication(jp_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("tre", "context", headers={"Authorization": "token wrong"})
    assert info.value.code == 403
