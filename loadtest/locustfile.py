"""Locust scenario of a launch: log in early, wait, then all click at once.

Each Locust user is one registrant from the registrants CSV. It logs in,
loads the sale and its spaces, draws a shortlist of wanted spaces (see
`loadtest.demand`), and polls the availability snapshot with If-None-Match
until its click time: the sale's opening plus a random delay of at most
`--spike-seconds`. Spawning finishes before the opening, so the clicks
arrive as one spike. A buyer grabs up to five spaces of its shortlist in
one ranked request, tries the next ones after "taken", and stops at its
limit or when nothing on its shortlist is free. About `--misbehaving` of
the buyers double-click, retry with the same Idempotency-Key, click a
second early, or ask for a space that does not exist.

Request names start with the phase ("before launch", "launch", "after
launch"), so the report keeps the ramp apart from the spike. Every hold
received in a 201 or 202 response is written to
`<responses-dir>/responses-<pid>.jsonl` for `parking-sale verify`.
`parking-sale loadtest` runs this file; to run it by hand, from the
repository root:

    locust -f loadtest/locustfile.py --headless -u 500 -r 200 -t 60s \\
        --host http://127.0.0.1:8000 --sale 1 --registrants registrants.csv

Options can also come from a config file (`--config loadtest/launch.conf`).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import itertools
import logging
import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import gevent
import orjson
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from loadtest.demand import MAX_RANKED, Demand, misbehaviour, taken_labels

logger = logging.getLogger(__name__)

UNKNOWN_LABEL = "ZZ-999"
# Bounds on one buyer, so that every request loop ends by itself. The task
# runs at most 3 times in all (again only after it raised, say on a failed
# login), and a buyer waits at most 10 minutes for its click time.
MAX_TASK_RUNS = 3
MAX_WAIT_SECONDS = 600.0
# Correct responses to a grab; anything else is a failure in the report.
GRAB_EXPECTED = (
    201,
    202,
    "409 space_taken",
    "409 limit_reached",
    "403 sale_not_open",
)


@dataclasses.dataclass(frozen=True)
class Registrant:
    registration_no: str
    access_code: str
    limit: int


@dataclasses.dataclass
class Scenario:
    """Options and counters shared by the users of one Locust process."""

    sale: int
    registrants: list[Registrant]
    spike_seconds: float
    poll_seconds: float
    shortlist: int
    zipf: float
    misbehaving: float
    seed: int
    max_grabs: int
    responses: TextIO
    next_index: itertools.count[int] = dataclasses.field(
        default_factory=itertools.count
    )
    demand: Demand | None = None
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)


_scenario: Scenario | None = None
_environment: Environment | None = None


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("launch scenario")
    group.add_argument("--sale", type=int, help="sale id", env_var="LAUNCH_SALE")
    group.add_argument(
        "--registrants",
        help="registrants CSV with registration_no, access_code and limit columns",
        env_var="LAUNCH_REGISTRANTS",
    )
    group.add_argument(
        "--responses-dir",
        default="artifacts/responses",
        help="folder for the holds received in 201/202 responses (JSON lines)",
    )
    group.add_argument(
        "--spike-seconds",
        type=float,
        default=1.0,
        help="buyers click within this many seconds after the opening",
    )
    group.add_argument(
        "--poll-seconds",
        type=float,
        default=2.0,
        help="seconds between availability polls while a buyer waits",
    )
    group.add_argument(
        "--shortlist", type=int, default=10, help="spaces each buyer wants, max"
    )
    group.add_argument(
        "--zipf", type=float, default=1.1, help="Zipf exponent of the demand skew"
    )
    group.add_argument(
        "--misbehaving",
        type=float,
        default=0.04,
        help="share of buyers that misbehave, 0 to 1",
    )
    group.add_argument(
        "--max-grabs", type=int, default=8, help="grab requests per buyer, max"
    )
    group.add_argument("--seed", type=int, default=7, help="seed of the demand draws")


def _read_registrants(path: str) -> list[Registrant]:
    with open(path, encoding="utf-8-sig", newline="") as file:
        return [
            Registrant(row["registration_no"], row["access_code"], int(row["limit"]))
            for row in csv.DictReader(file)
        ]


@events.init.add_listener
def _set_up(environment: Environment, **_: Any) -> None:
    global _scenario, _environment
    _environment = environment
    if isinstance(environment.runner, MasterRunner):
        return
    options = environment.parsed_options
    if options is None or options.sale is None or not options.registrants:
        raise SystemExit("locustfile: --sale and --registrants are required")
    folder = Path(options.responses_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _scenario = Scenario(
        sale=options.sale,
        registrants=_read_registrants(options.registrants),
        spike_seconds=options.spike_seconds,
        poll_seconds=options.poll_seconds,
        shortlist=options.shortlist,
        zipf=options.zipf,
        misbehaving=options.misbehaving,
        seed=options.seed,
        max_grabs=options.max_grabs,
        # Line-buffered, so a killed run still leaves every line written.
        responses=open(  # noqa: SIM115
            folder / f"responses-{os.getpid()}.jsonl", "a", buffering=1
        ),
    )


@events.spawning_complete.add_listener
def _quit_when_all_done(user_count: int, **_: Any) -> None:
    runner = _environment.runner if _environment else None
    if runner is None or isinstance(runner, WorkerRunner):
        return

    def watch() -> None:
        while runner.user_count > 0:
            gevent.sleep(0.5)
        logger.info("all buyers are done; stopping the run")
        runner.quit()

    gevent.spawn(watch)


@events.quitting.add_listener
def _report(environment: Environment, **_: Any) -> None:
    if _scenario is None:
        return
    _scenario.responses.close()
    outcomes = ", ".join(f"{k}={v}" for k, v in sorted(_scenario.outcomes.items()))
    print(f"launch scenario outcomes: {outcomes}", flush=True)


def _scenario_or_stop() -> Scenario:
    if _scenario is None:
        raise StopUser()
    return _scenario


class Buyer(FastHttpUser):
    """One registrant going through the launch once, then stopping."""

    wait_time = constant(0)
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        scenario = _scenario_or_stop()
        self.scenario = scenario
        self.index = self._buyer_index(scenario)
        self.registrant: Registrant | None = None
        if self.index < len(scenario.registrants):
            self.registrant = scenario.registrants[self.index]
        self.rng = random.Random(f"{scenario.seed}-{self.index}")
        self.misbehaviour = misbehaviour(self.index, scenario.misbehaving)
        self.base = f"/api/sales/{scenario.sale}"
        self.headers: dict[str, str] = {}
        self.offset = 0.0
        self.opens_at = 0.0
        self.positions: dict[str, int] = {}
        self.shortlist: list[str] = []
        self.etag: str | None = None
        self.polled_at = 0.0
        self.taken: set[str] = set()
        self.won: list[str] = []
        self.grabbed = False
        self.runs = 0

    def _buyer_index(self, scenario: Scenario) -> int:
        """Return this user's row in the registrants file, unique in the run.

        With `--processes N`, worker process i takes rows i, i + N, i + 2N...
        NOTE: workers started by hand with `--worker` do not know N, so they
        would share rows; run this file in one process or with --processes.
        """
        local = next(scenario.next_index)
        runner = self.environment.runner
        options = self.environment.parsed_options
        if isinstance(runner, WorkerRunner) and options and options.processes:
            return local * options.processes + runner.worker_index
        return local

    def clock(self) -> float:
        """Return the server's time as this buyer estimates it, in seconds."""
        return time.time() + self.offset

    def count(self, outcome: str) -> None:
        self.scenario.outcomes[outcome] += 1

    @task
    def go_through_launch(self) -> None:
        self.runs += 1
        if self.registrant is None:
            self.count("no_registrant_left")
            raise StopUser()
        if self.runs > MAX_TASK_RUNS:
            self.count("gave_up_after_errors")
            raise StopUser()
        if not self.headers:
            self.log_in()
        if not self.shortlist:
            self.load_sale()
        if not self.grabbed:
            self.grabbed = True
            self.wait_for_launch()
            self.grab_until_done()
        self.check_my_holds()
        raise StopUser()

    def call(
        self,
        method: str,
        path: str,
        name: str,
        expected: tuple[int | str, ...] = (200,),
        outcome_in_name: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Any, Any]:
        """Send one request; return status, decoded JSON body and headers.

        `expected` lists the statuses, or "status error-code" pairs such as
        "409 space_taken", that count as a correct response.
        """
        with self.client.request(
            method, self.base + path, name=name, catch_response=True, **kwargs
        ) as response:
            status = response.status_code or 0
            body: Any = None
            if response.content and status != 304:
                try:
                    body = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    body = None
            error = body.get("error") if isinstance(body, dict) else None
            exception = response.request_meta.get("exception")
            if status == 0 and "connection closed" in str(exception):
                error = "connection_closed"
            if outcome_in_name:
                outcome = f"{status} {error}" if error else str(status)
                response.request_meta["name"] = f"{name} {outcome}"
            if status in expected or f"{status} {error}" in expected:
                response.success()
            else:
                cause = error or exception or ""
                response.failure(f"unexpected {status} {cause}".strip())
        return status, body, response.headers

    def log_in(self) -> None:
        assert self.registrant is not None
        status, body, _ = self.call(
            "POST",
            "/session",
            "before launch: POST session",
            expected=(201,),
            json={
                "registration_no": self.registrant.registration_no,
                "access_code": self.registrant.access_code,
            },
        )
        if status != 201:
            raise RuntimeError(f"login failed with status {status}")
        self.headers = {"Authorization": f"Bearer {body['token']}"}

    def load_sale(self) -> None:
        sent = time.time()
        status, sale, _ = self.call("GET", "", "before launch: GET sale")
        if status != 200:
            raise RuntimeError(f"reading the sale failed with status {status}")
        self.offset = sale["server_time_ms"] / 1000 - (sent + time.time()) / 2
        self.opens_at = dt.datetime.fromisoformat(sale["opens_at"]).timestamp()

        status, spaces, _ = self.call("GET", "/spaces", "before launch: GET spaces")
        if status != 200:
            raise RuntimeError(f"reading the spaces failed with status {status}")
        self.positions = {s["label"]: s["position"] for s in spaces["spaces"]}
        if self.scenario.demand is None:
            self.scenario.demand = Demand.from_spaces(
                spaces["spaces"], self.scenario.zipf
            )
        self.shortlist = self.scenario.demand.shortlist(
            self.rng, self.scenario.shortlist
        )
        self.poll("before launch")

    def poll(self, phase: str) -> None:
        """Refresh the availability snapshot; a 304 keeps the one in hand."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        status, body, response_headers = self.call(
            "GET",
            "/availability",
            f"{phase}: GET availability",
            expected=(200, 304),
            headers=headers,
        )
        self.polled_at = time.monotonic()
        if status == 200:
            self.etag = response_headers.get("etag")
            bitmap = base64.b64decode(body["bitmap"])
            self.taken = taken_labels(bitmap, self.positions)

    def wait_for_launch(self) -> None:
        if self.clock() >= self.opens_at:
            self.count("logged_in_after_opening")
        click_at = self.opens_at + self.rng.uniform(0, self.scenario.spike_seconds)
        # A click sent a second early gets 403 sale_not_open, unless the
        # service is so slow that it arrives after the opening.
        if self.misbehaviour == "early_click" and self.clock() < self.opens_at - 1:
            self.refresh_before(self.opens_at - 1.0)
            self.grab([self.shortlist[0]], "launch: POST holds early")
        self.refresh_before(click_at)

    def refresh_before(self, moment: float) -> None:
        """Sleep until `moment`, refreshing the availability 1 to 2 s before.

        A countdown page does the same, and the request keeps the keep-alive
        connection from idling out just before the click.
        """
        self.sleep_until(moment - self.rng.uniform(1.0, 2.0))
        if time.monotonic() - self.polled_at > 1.0 and self.clock() < moment:
            self.poll("before launch")
        self.sleep_until(moment)

    def sleep_until(self, moment: float) -> None:
        """Sleep until `moment` (server time), polling the availability."""
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        while time.monotonic() < deadline:
            left = moment - self.clock()
            if left <= 0:
                return
            since_poll = time.monotonic() - self.polled_at
            poll_in = self.scenario.poll_seconds * self.rng.uniform(0.8, 1.2)
            if since_poll >= poll_in and left > 0.2:
                self.poll("before launch")
                continue
            gevent.sleep(min(left, max(0.01, poll_in - since_poll)))

    def grab(
        self,
        labels: list[str],
        name: str = "launch: POST holds",
        expected: tuple[int | str, ...] = GRAB_EXPECTED,
        key: str | None = None,
    ) -> tuple[int, Any]:
        """Send one ranked grab; record a hold received with 201 or 202."""
        key = key or uuid.uuid4().hex
        # A grab sent on a keep-alive connection that the server closed gets
        # no response. Like a browser, the buyer sends it once more, with the
        # same key, which the service never grants twice. The first attempt
        # shows in the report as "0 connection_closed", not as a failure.
        for attempt in range(2):
            resend = ("0 connection_closed",) if attempt == 0 else ()
            status, body, _ = self.call(
                "POST",
                "/holds",
                name,
                expected=(*expected, *resend),
                outcome_in_name=True,
                json={"spaces": labels},
                headers={**self.headers, "Idempotency-Key": key},
            )
            if status != 0:
                break
        if status in (201, 202) and body["hold"] not in self.won:
            self.won.append(body["hold"])
            self.scenario.responses.write(
                orjson.dumps(
                    {
                        "sale": self.scenario.sale,
                        "hold": body["hold"],
                        "space": body["space"],
                        "buyer": self.registrant.registration_no
                        if self.registrant
                        else "",
                        "status": status,
                    }
                ).decode()
                + "\n"
            )
        # Only stored outcomes repeat: "sale not open" or 429 may change.
        if self.misbehaviour == "same_key_retry" and status in (201, 202, 404, 409):
            self.repeat_with_same_key(labels, key, status, body)
        return status, body

    def repeat_with_same_key(
        self, labels: list[str], key: str, status: int, body: Any
    ) -> None:
        """Retry a grab with its key and check the first response comes back."""
        again, repeated = self.grab_once(labels, key)
        if again == 429:
            return
        first = body.get("hold") or body.get("error") if body else None
        second = repeated.get("hold") or repeated.get("error") if repeated else None
        if (again, second) != (status, first):
            self.count("replay_mismatch")
            events.request.fire(
                request_type="CHECK",
                name="launch: same key returns the first response",
                response_time=0,
                response_length=0,
                exception=RuntimeError(
                    f"first {status} {first}, repeat {again} {second}"
                ),
            )

    def grab_once(self, labels: list[str], key: str) -> tuple[int, Any]:
        status, body, _ = self.call(
            "POST",
            "/holds",
            "launch: POST holds repeat",
            expected=(*GRAB_EXPECTED, "404 unknown_space", 429),
            outcome_in_name=True,
            json={"spaces": labels},
            headers={**self.headers, "Idempotency-Key": key},
        )
        return status, body

    def double_click(self, labels: list[str]) -> tuple[int, Any]:
        """Send the same grab twice at once with two keys, as a buggy page would."""
        first = gevent.spawn(self.grab, labels, "launch: POST holds double")
        second = gevent.spawn(self.grab, labels, "launch: POST holds double")
        gevent.joinall([first, second], timeout=self.network_timeout + 5)
        results = [g.value for g in (first, second) if g.value is not None]
        won = [r for r in results if r[0] in (201, 202)]
        return (won or results or [(0, None)])[0]

    def grab_until_done(self) -> None:
        assert self.registrant is not None
        if self.misbehaviour == "unknown_space":
            self.grab(
                [UNKNOWN_LABEL],
                "launch: POST holds unknown",
                expected=("404 unknown_space", "403 sale_not_open"),
            )
        tried: set[str] = set()
        for attempt in range(self.scenario.max_grabs):
            if len(self.won) >= self.registrant.limit:
                self.count("reached_limit")
                return
            wanted = [s for s in self.shortlist if s not in tried | self.taken]
            if not wanted:
                self.count("nothing_wanted_is_free")
                return
            batch = wanted[:MAX_RANKED]
            if attempt == 0 and self.misbehaviour == "double_click":
                status, body = self.double_click(batch)
            else:
                status, body = self.grab(batch)
            error = body.get("error") if isinstance(body, dict) else None
            if status in (201, 202):
                tried.add(body["space"])
            elif error == "space_taken":
                tried.update(batch)
                if time.monotonic() - self.polled_at > self.scenario.poll_seconds:
                    self.poll("launch")
            elif error == "limit_reached":
                self.count("reached_limit")
                return
            elif error == "sale_not_open":
                # This buyer's estimate of the server's clock ran a little ahead.
                self.count("clicked_before_opening")
                opens = dt.datetime.fromisoformat(body["opens_at"]).timestamp()
                now = dt.datetime.fromisoformat(body["server_time"]).timestamp()
                gevent.sleep(min(2.0, max(0.005, opens - now)))
            elif status in (429, 503):
                pause = body.get("retry_after") if isinstance(body, dict) else None
                gevent.sleep(min(2.0, float(pause or 0.5)))
            else:
                self.count(f"stopped_on_{status}_{error}")
                return
        self.count("used_all_grabs")

    def check_my_holds(self) -> None:
        status, body, _ = self.call(
            "GET", "/holds/mine", "after launch: GET holds/mine", headers=self.headers
        )
        if status != 200:
            return
        listed = {hold["hold"] for hold in body["holds"]}
        if not set(self.won) <= listed:
            self.count("won_hold_not_listed")
