"""The download path against a real HTTP server on 127.0.0.1."""

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_ml100k
from ur4rec.cli import main
from ur4rec.data.sources import download_release, load_raw
from ur4rec.errors import ChecksumError, DataError


def make_zip(tmp_path: Path) -> bytes:
    folder = write_ml100k(tmp_path / "zipsrc" / "ml-100k")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"ml-100k/{f.name}")
    return buffer.getvalue()


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int | None]] = {}  # path -> (body, claimed length)
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, claimed = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(claimed or len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


def test_good_download_is_verified_and_extracted(server: Server, tmp_path: Path) -> None:
    body = make_zip(tmp_path)
    server.routes["/ml-100k.zip"] = (body, None)
    root = tmp_path / "data"
    folder = download_release(
        "ml-100k", root, url=f"{server.url}/ml-100k.zip", sha256=hashlib.sha256(body).hexdigest()
    )
    assert (folder / "ml-100k" / "u.data").is_file()
    assert not list((root / "downloads").iterdir())  # the archive is not kept
    # The extracted copy is now the cache source.
    assert len(load_raw("ml-100k", source="cache", root=root)) == 16


def test_wrong_digest_keeps_nothing(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = (make_zip(tmp_path), None)
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="expected 0000"):
        download_release("ml-100k", root, url=f"{server.url}/ml-100k.zip", sha256="0000")
    assert not (root / "raw").exists()
    assert not list((root / "downloads").iterdir())


def test_truncated_download_is_an_error(server: Server, tmp_path: Path) -> None:
    body = make_zip(tmp_path)
    server.routes["/ml-100k.zip"] = (body[: len(body) // 2], len(body))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="cut short|failed"):
        download_release(
            "ml-100k",
            root,
            url=f"{server.url}/ml-100k.zip",
            sha256=hashlib.sha256(body).hexdigest(),
        )
    assert not (root / "raw").exists()


def test_not_a_zip(server: Server, tmp_path: Path) -> None:
    body = b"<html>not found</html>"
    server.routes["/ml-100k.zip"] = (body, None)
    with pytest.raises(DataError, match="not a valid zip"):
        download_release(
            "ml-100k",
            tmp_path,
            url=f"{server.url}/ml-100k.zip",
            sha256=hashlib.sha256(body).hexdigest(),
        )


def test_dead_server(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download of http://127.0.0.1:9/ml-100k.zip failed"):
        download_release("ml-100k", tmp_path, url="http://127.0.0.1:9/ml-100k.zip", sha256="0")


def test_cli_download_against_pinned_digest(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # A mirror serving a file that is not the pinned release: the CLI refuses it.
    server.routes["/ml-1m.zip"] = (make_zip(tmp_path), None)
    monkeypatch.setenv("UR4REC_MIRROR", server.url)
    root = tmp_path / "data"
    assert main(["data", "prepare", "ml-1m", "--data-dir", str(root)]) == 1
    err = capsys.readouterr().err
    assert "SHA-256" in err and "a6898adb50b9" in err
    assert not (root / "prepared").exists() and not (root / "raw").exists()
