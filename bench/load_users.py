"""The researchers of the load bench, as a locustfile (`locust -f bench/load_users.py`).

Each simulated researcher is one person of the plan (TRE_LOAD_PLAN, a JSON file that
bench/load.py writes): she logs in through the site's OIDC provider, spawns her project's
workspace, opens a kernel over the websocket and then, until the run ends, executes cells,
asks the hub's REST API about herself and now and then submits a release request through
her workspace's review API (the jupyter_tre_lab routes the JupyterLab panel calls). Every
timed step is a locust request event; the raw times go to the plan's `samples` file.

Invariant: only the loopback hub of the plan is contacted (HubUser refuses anything else).
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

from locust import User, between, events, task
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.hubclient import HubUser, KernelChannel

PLAN: dict[str, Any] = json.loads(Path(os.environ["TRE_LOAD_PLAN"]).read_text(encoding="utf-8"))
PEOPLE = iter(PLAN["people"])
SAMPLES: list[dict[str, Any]] = []
TABLE = "grade,patients\nII,28\nIII,71\nIV,218\n"
SCRIPT = re.compile(r"<script.*?</script>", re.DOTALL)
ERROR = re.compile(r"(\d{3} : .*)")
CELL = "sum(i * i for i in range(100_000))"
T = TypeVar("T")

LOGIN, SPAWN, KERNEL, FIRST, EXECUTE, HUB_API = (
    "log in (OIDC)",
    "spawn to ready",
    "open a kernel",
    "first cell",
    "execute a cell",
    "hub API GET /users/[name]",
)
CREATE, ADD, SUBMIT = ("release: create", "release: add file", "release: submit")


def page_error(text: str) -> str:
    """The message of a hub error page (its status line onwards), without its scripts."""
    visible = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", SCRIPT.sub("", text))).split())
    found = ERROR.search(visible)
    return (found.group(1) if found else visible)[:300]


class StepFailed(RuntimeError):
    """A step answered, but not as it should have; the message says how."""


@events.request.add_listener
def _keep(request_type: str, name: str, response_time: float, exception: object, **_: Any) -> None:
    SAMPLES.append(
        {
            "name": name,
            "ms": response_time,
            "ok": exception is None,
            "error": None if exception is None else str(exception)[:300],
            "at": time.time(),
        }
    )


@events.quitting.add_listener
def _write(**_: Any) -> None:
    Path(PLAN["samples"]).write_text(json.dumps(SAMPLES) + "\n", encoding="utf-8")


class Researcher(User):
    wait_time = between(PLAN["think"][0], PLAN["think"][1])

    def on_start(self) -> None:
        person = next(PEOPLE)
        self.project: str = person["project"]
        self.hub = HubUser(PLAN["url"], person["username"])
        self.prefix = f"/user/{self.hub.username}/{self.project}/"
        self.kernel: KernelChannel | None = None
        self.stack = ExitStack()
        self.outputs = count(1)
        self.spawn_began: float | None = None
        self.ready = False
        self.step(LOGIN, self.log_in)
        self.step(SPAWN, self.spawn)
        self.kernel = self.step(
            KERNEL, lambda: self.stack.enter_context(self.hub.kernel(self.project))
        )
        self.step(FIRST, lambda: self.execute("import os, statistics"))

    def on_stop(self) -> None:
        if self.spawn_began is not None and not self.ready:
            # The run ended while the hub was still starting this workspace: a failure too.
            self.environment.events.request.fire(
                request_type="step",
                name=SPAWN,
                response_time=1000 * (time.perf_counter() - self.spawn_began),
                response_length=0,
                exception=StepFailed("not ready when the run ended"),
                context={"user": self.hub.username},
            )
        self.stack.close()  # the kernel's websocket, then the kernel itself

    # -- one timed step --------------------------------------------------------------------

    def step(self, name: str, action: Callable[[], T]) -> T | None:
        """Run `action`, reporting its time (and failure) to locust as request `name`."""
        began = time.perf_counter()
        error: Exception | None = None
        result: T | None = None
        try:
            result = action()
        except Exception as exc:  # counted and reported as this step's error
            error = exc
        self.environment.events.request.fire(
            request_type="step",
            name=name,
            response_time=1000 * (time.perf_counter() - began),
            response_length=0,
            exception=error,
            context={"user": self.hub.username},
        )
        if name == SPAWN:
            self.spawn_began = None  # reported here, success or failure
        if error is not None and name in (LOGIN, SPAWN, KERNEL):
            raise StopUser  # nothing else can work without them: this researcher stops
        return result

    def log_in(self) -> None:
        page = self.hub.log_in()
        if page.status_code != 200 or not page.url.endswith("/hub/home"):
            raise StepFailed(f"login ended at {page.url} ({page.status_code})")

    def spawn(self) -> None:
        self.spawn_began = time.perf_counter()
        page = self.hub.spawn(self.project)
        if page.status_code >= 400:
            raise StepFailed(f"spawn refused ({page.status_code}): {page_error(page.text)}")
        self.hub.wait_ready(self.project, timeout=PLAN["spawn_timeout"])
        self.ready = True

    def execute(self, code: str) -> str:
        if self.kernel is None:
            raise StepFailed("no kernel")
        return self.kernel.run(code, timeout=120).raise_for_error()

    def release_api(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.hub._checked(
            "POST",
            self.hub.url(self.prefix + "tre/release/requests" + path),
            headers={"X-XSRFToken": self.hub.xsrf(self.prefix)},
            json=body,
        )
        if response.status_code not in (200, 201):
            raise StepFailed(f"POST {path or '/'}: {response.status_code} {response.text[:200]}")
        answer: dict[str, Any] = response.json()
        return answer

    # -- what a researcher does ------------------------------------------------------------

    @task(6)
    def run_cell(self) -> None:
        self.step(EXECUTE, lambda: self.execute(CELL))

    @task(3)
    def ask_the_hub(self) -> None:
        def get() -> None:
            response = self.hub.api("GET", f"/users/{self.hub.username}")
            if response.status_code != 200:
                raise StepFailed(f"{response.status_code} {response.text[:200]}")

        self.step(HUB_API, get)

    @task(1)
    def request_release(self) -> None:
        path = f"outputs/{self.hub.username}-{next(self.outputs)}.csv"
        code = (
            "import pathlib\n"
            f"p = pathlib.Path({path!r}); p.parent.mkdir(exist_ok=True)\n"
            f"p.write_text({TABLE!r})"
        )
        if self.step(EXECUTE, lambda: self.execute(code)) is None:
            return
        made = self.step(
            CREATE,
            lambda: self.release_api("", {"title": "Grades", "description": "Table 1"}),
        )
        if made is None:
            return
        file = {
            "path": path,
            "description": "Patients by grade",
            "context": "Table 1 of the paper",
            "population": "Load test cohort",
            "suppression": "none needed",
        }
        if self.step(ADD, lambda: self.release_api(f"/{made['id']}/files", file)) is None:
            return

        def submit() -> None:
            answer = self.release_api(f"/{made['id']}/submit", {})
            if answer.get("state") != "submitted":
                raise StepFailed(f"state {answer.get('state')!r} after submit")

        self.step(SUBMIT, submit)
