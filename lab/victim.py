"""The lab victim's web shop: a stdlib HTTP server over sqlite, injectable on purpose.

Runs inside the victim's network namespace as a script (standard library only):
``python victim.py --address 10.66.0.10 --port 80 --db shop.db``. Pages:

- ``/`` links to the rest; ``/health`` answers ``ok`` (what the machine-like clients poll);
- ``GET /login`` is a form; ``POST /login`` checks the user in sqlite with the values pasted
  into the SQL text, so that hydra can guess passwords and sqlmap can inject;
- ``/item?id=N`` shows one item from a query with ``id`` pasted in, and shows sqlite's error
  text when the query breaks (what sqlmap's error-based checks look for);
- ``/files/NAME`` serves downloads of a few sizes.

Never run it outside the lab: it is built to be broken into.
"""

from __future__ import annotations

import argparse
import html
import random
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

USERS = {"alice": "wonderland", "bob": "builder42", "carol": "s3cret-garden", "admin": "sunshine"}
ITEMS = ["kettle", "lamp", "chair", "desk", "mug", "plant", "clock", "radio", "fan", "rug"]
FILES = {"report.pdf": 180_000, "photo.jpg": 450_000, "manual.zip": 1_200_000, "notes.txt": 6_000}
LOGIN_FAILED = "Invalid user name or password"
LOGIN_OK = "Welcome back"


def create_database(path: str) -> None:
    """Create the shop's tables and rows (replacing any from an earlier run)."""
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE IF EXISTS users; DROP TABLE IF EXISTS items;"
            "CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT, password TEXT);"
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER);"
        )
        db.executemany("INSERT INTO users (username, password) VALUES (?, ?)", USERS.items())
        rng = random.Random(7)
        for number in range(1, 41):
            name = f"{rng.choice(ITEMS)} {number}"
            db.execute(
                "INSERT INTO items (name, price, stock) VALUES (?, ?, ?)",
                (name, round(rng.uniform(3, 250), 2), rng.randrange(0, 90)),
            )


def _page(title: str, body: str) -> bytes:
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


class ShopHandler(BaseHTTPRequestHandler):
    """Routes of the shop; the database path is set on the class by :func:`serve`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server_version = "LabShop/1.0"
    database = ""
    _file_bytes: ClassVar[dict[str, bytes]] = {}

    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise
        return

    def _send(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.database, timeout=5) as db:
            return db.execute(sql).fetchall()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/":
            links = "".join(f'<li><a href="/item?id={n}">item {n}</a></li>' for n in range(1, 11))
            files = "".join(f'<li><a href="/files/{name}">{name}</a></li>' for name in FILES)
            body = f'<p><a href="/login">log in</a></p><ul>{links}</ul><ul>{files}</ul>'
            self._send(200, _page("Lab shop", body))
        elif url.path == "/health":
            self._send(200, b"ok\n", "text/plain")
        elif url.path == "/login":
            form = (
                '<form method="post" action="/login"><input name="username">'
                '<input name="password" type="password"><button>Log in</button></form>'
            )
            self._send(200, _page("Log in", form))
        elif url.path == "/item":
            self._item(parse_qs(url.query).get("id", ["1"])[0])
        elif url.path.startswith("/files/") and url.path[7:] in FILES:
            self._send(200, self._file(url.path[7:]), "application/octet-stream")
        else:
            self._send(404, _page("Not found", "<p>No such page.</p>"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        fields = parse_qs(self.rfile.read(min(length, 65536)).decode(errors="replace"))
        if urlsplit(self.path).path != "/login":
            self._send(404, _page("Not found", "<p>No such page.</p>"))
            return
        user = fields.get("username", [""])[0]
        password = fields.get("password", [""])[0]
        # Deliberately injectable: the values are pasted into the SQL text.
        sql = f"SELECT id FROM users WHERE username = '{user}' AND password = '{password}'"
        try:
            found = self._query(sql)
        except sqlite3.Error as err:
            self._send(500, _page("Error", f"<pre>sqlite3.OperationalError: {err}</pre>"))
            return
        if found:
            self._send(200, _page(LOGIN_OK, f"<p>{LOGIN_OK}, {html.escape(user)}.</p>"))
        else:
            self._send(200, _page("Log in", f"<p>{LOGIN_FAILED}.</p>"))

    def _item(self, item_id: str) -> None:
        sql = f"SELECT name, price, stock FROM items WHERE id = {item_id}"  # injectable on purpose
        try:
            rows = self._query(sql)
        except sqlite3.Error as err:
            self._send(500, _page("Error", f"<pre>sqlite3.OperationalError: {err}</pre>"))
            return
        if not rows:
            self._send(404, _page("No such item", "<p>Try another one.</p>"))
            return
        cells = "".join(
            f"<tr><td>{html.escape(str(n))}</td><td>{p}</td><td>{s}</td></tr>" for n, p, s in rows
        )
        self._send(200, _page("Item", f"<table>{cells}</table>"))

    def _file(self, name: str) -> bytes:
        if name not in self._file_bytes:
            self._file_bytes[name] = random.Random(name).randbytes(FILES[name])
        return self._file_bytes[name]


def serve(address: str, port: int, database: str) -> None:
    """Create the database and serve until interrupted."""
    create_database(database)
    ShopHandler.database = database
    server = ThreadingHTTPServer((address, port), ShopHandler)
    server.daemon_threads = True
    server.request_queue_size = 128
    print(f"victim_http_listening address={address} port={port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        threading.Thread(target=server.server_close, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The lab's deliberately vulnerable web shop.")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    serve(args.address, args.port, args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
