"""A benign lab client: browses, logs in, downloads, resolves names and pings, with real tools.

Runs inside a client's network namespace as a script (standard library only), until a wall-clock
deadline. Two paces:

- ``human``: a random action, then a think time drawn from a long-tailed distribution (mostly
  a few seconds, sometimes half a minute); a page visit fetches the page and a few links.
- ``machine``: a monitoring agent: every ``interval`` seconds a health check, and on a slower
  beat a name lookup and a ping, with a little jitter.

Every tool runs with its own time limit, so that a stalled victim cannot hold the client.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time

_NAMES = ("www", "shop", "mail", "files", "victim")
_MISSING_NAMES = ("wpad", "printer", "intranet")  # lookups that fail, as on any network
_USERS = {"alice": "wonderland", "bob": "builder42", "carol": "s3cret-garden"}
_FILES = ("report.pdf", "photo.jpg", "manual.zip", "notes.txt")


class Client:
    """Runs the actions against ``site`` (a name the lab's DNS server knows)."""

    def __init__(self, site: str, victim_ip: str, rng: random.Random) -> None:
        self.site, self.victim_ip, self.rng = site, victim_ip, rng
        self.actions = 0
        self.failures = 0

    def _run(self, argv: list[str], limit_s: float = 15) -> None:
        self.actions += 1
        try:
            done = subprocess.run(argv, capture_output=True, timeout=limit_s)
        except subprocess.TimeoutExpired:
            self.failures += 1
            return
        if done.returncode:
            self.failures += 1

    def curl(self, path: str, *extra: str) -> None:
        self._run(
            ["curl", "-s", "-o", "/dev/null", "-m", "10", *extra, f"http://{self.site}{path}"]
        )

    def visit(self) -> None:
        self.curl("/")
        for _ in range(self.rng.randrange(0, 4)):
            time.sleep(self.rng.uniform(0.3, 2.5))
            self.curl(f"/item?id={self.rng.randrange(1, 41)}")

    def log_in(self) -> None:
        user, password = self.rng.choice(list(_USERS.items()))
        if self.rng.random() < 0.15:  # people mistype; one failed login is not an attack
            password = password[:-1]
        self.curl("/login")
        time.sleep(self.rng.uniform(1.0, 4.0))
        self.curl("/login", "--data", f"username={user}&password={password}")

    def download(self) -> None:
        self._run(["curl", "-s", "-o", "/dev/null", "-m", "30",
                   f"http://{self.site}/files/{self.rng.choice(_FILES)}"], limit_s=35)  # fmt: skip

    def resolve(self) -> None:
        name = self.rng.choice(_NAMES if self.rng.random() < 0.85 else _MISSING_NAMES)
        kind = self.rng.choice(("A", "A", "A", "MX", "TXT"))
        self._run(["dig", "+time=2", "+tries=1", f"{name}.lab.test", kind], limit_s=5)

    def ping(self, count: int | None = None) -> None:
        count = count or self.rng.randrange(1, 5)
        self._run(["ping", "-n", "-q", "-c", str(count), "-i", "0.5", "-W", "2", self.victim_ip])


def run_human(client: Client, deadline: float) -> None:
    rng = client.rng
    actions = [client.visit, client.visit, client.visit, client.log_in, client.download]
    actions += [client.resolve, client.resolve, client.ping]
    while time.time() < deadline:
        rng.choice(actions)()
        think_s = min(rng.lognormvariate(0.8, 0.9), 30.0)
        time.sleep(max(0.0, min(think_s, deadline - time.time())))


def run_machine(client: Client, deadline: float, interval_s: float) -> None:
    beat = 0
    while time.time() < deadline:
        started = time.time()
        client.curl("/health")
        if beat % 5 == 0:
            client.resolve()
        if beat % 10 == 0:
            client.ping(count=1)
        beat += 1
        pause = interval_s * client.rng.uniform(0.95, 1.05) - (time.time() - started)
        time.sleep(max(0.0, min(pause, deadline - time.time())))


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # the lab stops clients with SIGTERM
    parser = argparse.ArgumentParser(description="A benign lab client.")
    parser.add_argument("--site", default="www.lab.test")
    parser.add_argument("--victim-ip", required=True)
    parser.add_argument("--pace", choices=["human", "machine"], default="human")
    parser.add_argument("--interval", type=float, default=1.0, help="machine pace, seconds")
    parser.add_argument("--until", type=float, required=True, help="Unix time to stop at")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    client = Client(args.site, args.victim_ip, random.Random(args.seed))
    try:
        if args.pace == "human":
            run_human(client, args.until)
        else:
            run_machine(client, args.until, args.interval)
    except KeyboardInterrupt:
        pass
    print(f"benign_client_done actions={client.actions} failures={client.failures}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
