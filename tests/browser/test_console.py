"""The web console in a real headless Chromium against a real server, as a person uses it:
sign in, filter, page, read a failure, create and delete a server while its task runs,
sign out; a read-only IAM user is refused with the API's own message."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from imagejobs.domain.enums import JobStatus, JobType, SubJobStatus
from imagejobs.domain.records import JobDetail
from imagejobs.domain.times import now_ms
from imagejobs.services.identity import IdentityService
from imagejobs.storage.migrate import migrate
from tests.browser.conftest import LAPTOP
from tests.conftest import ServerProcess
from tests.factories import Tenant, make_job, new_tenant, with_identity, write_jobs
from tests.integration.http import password_token

FAILURE_CODE = "WKS.00211401"
FAILURE_MESSAGE = "The image img-0451 is not available in this region."
READER = "reader"


@dataclasses.dataclass(frozen=True)
class Console:
    server: ServerProcess
    tenant: Tenant
    reader_password: str
    failed_job_id: str

    @property
    def url(self) -> str:
        return self.server.base_url + "/console"


def _spread(jobs: list[JobDetail]) -> list[JobDetail]:
    """Begin times 37 minutes apart, newest last (ids are time-ordered), lasting 1-9 minutes."""
    now = now_ms()
    spread = []
    for age, detail in enumerate(reversed(jobs)):
        begin = now - age * 37 * 60_000 - 5_000
        end = begin + (age % 9 + 1) * 60_000 if detail.job.end_time else None
        subs = [
            s._replace(begin_time=begin, end_time=(end or begin + 60_000) if s.end_time else None)
            for s in detail.sub_jobs
        ]
        job = detail.job._replace(begin_time=begin, end_time=end)
        spread.append(JobDetail(job=job, sub_jobs=subs))
    return list(reversed(spread))


def _seed(url: str, tenant: Tenant) -> str:
    """23 CREATE_SERVER jobs (18 done, 3 failed, the newest failed one with FAILURE_MESSAGE,
    one running and one waiting) and two DELETE_SERVER jobs, one of them running."""
    project = tenant.project_id
    jobs = [make_job(project, status=JobStatus.SUCCESS) for _ in range(18)]
    jobs += [make_job(project, status=JobStatus.FAILED, sub_jobs=2) for _ in range(3)]
    failed = jobs[-1]
    sub_jobs = [
        failed.sub_jobs[0]._replace(error_message=FAILURE_MESSAGE),
        failed.sub_jobs[1]._replace(status=SubJobStatus.SUCCESS, error_code="", error_message=""),
    ]
    jobs[-1] = dataclasses.replace(failed, sub_jobs=sub_jobs)
    running = [SubJobStatus.SUCCESS, SubJobStatus.RUNNING, SubJobStatus.WAITING]
    jobs += [
        make_job(project, status=JobStatus.RUNNING, sub_statuses=running),
        make_job(project, status=JobStatus.WAITING),
    ]
    write_jobs(url, _spread(jobs))
    write_jobs(
        url,
        [
            make_job(project, JobType.DELETE_SERVER, JobStatus.SUCCESS),
            make_job(project, JobType.DELETE_SERVER, JobStatus.RUNNING, sub_statuses=running),
        ],
    )
    return failed.job.id


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    directory = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{directory / 'imagejobs.db'}"
    asyncio.run(migrate(url))
    tenant = new_tenant(url, account="acme")

    async def reader(identity: IdentityService) -> str:
        _, password = await identity.create_user(tenant.account, READER)
        await identity.attach_policy(tenant.account, "Workspace ReadOnlyAccess", user_name=READER)
        return password

    reader_password = with_identity(url, reader)
    failed_job_id = _seed(url, tenant)
    fast_jobs = {
        "IMAGEJOBS_SIMULATED_QUEUE_SECONDS": "0.2",
        "IMAGEJOBS_SIMULATED_DURATION_SECONDS": "0.5",
    }
    server = ServerProcess(url, directory / "server", extra_env=fast_jobs)
    yield Console(server, tenant, reader_password, failed_job_id)
    server.stop()


def wait(driver: WebDriver, condition: Any, timeout: float = 15) -> Any:
    """Until ``condition`` holds; the console redraws while tasks run, so elements found
    a moment ago may be gone: look again."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)


def attribute(driver: WebDriver, css: str, name: str) -> str:
    value: str = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, css).get_attribute(name))
    return value


def click(driver: WebDriver, css: str) -> None:
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)


def element(driver: WebDriver, css: str) -> WebElement:
    found: WebElement = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, css))
    return found


def visible_rows(driver: WebDriver, table: str) -> list[WebElement]:
    element(driver, f"#{table}")
    rows: list[WebElement] = driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
    return rows


def type_into(driver: WebDriver, field_id: str, *keys: str) -> None:
    field = element(driver, f"#{field_id}")
    field.clear()  # the console prefills the last account, user and project
    field.send_keys(*keys)


def sign_in(driver: WebDriver, console: Console, user: str, password: str) -> None:
    driver.get(console.url)
    type_into(driver, "account", console.tenant.account)
    type_into(driver, "user", user)
    type_into(driver, "password", password, Keys.ENTER)
    wait(driver, lambda d: d.find_elements(By.ID, "sign-out"))


def sign_out(driver: WebDriver) -> None:
    driver.find_element(By.ID, "sign-out").click()
    element(driver, "#signin-notice")


def test_get_slash_leads_to_sign_in_and_a_keyboard_signs_in(
    browser: WebDriver, console: Console, screenshot_dir: Path
) -> None:
    browser.get(console.server.base_url + "/")
    field = element(browser, "#account")
    assert browser.switch_to.active_element == field  # the first field has the focus
    browser.save_screenshot(str(screenshot_dir / "sign-in.png"))
    # Only the keyboard: type, Tab to the next field, Enter submits.
    active = browser.switch_to.active_element
    active.send_keys(console.tenant.account, Keys.TAB)
    browser.switch_to.active_element.send_keys(console.tenant.account, Keys.TAB)
    browser.switch_to.active_element.send_keys(console.tenant.password, Keys.ENTER)

    rows = wait(browser, lambda d: visible_rows(d, "tasks-table"))
    assert len(rows) == 10
    assert element(browser, "#total-count").text == "23"
    ids = [row.get_attribute("data-job-id") for row in rows]
    assert ids == sorted(ids, reverse=True)  # newest first
    statuses = [row.get_attribute("data-status") for row in rows[:3]]
    assert statuses == ["WAITING", "RUNNING", "FAILED"]
    assert browser.find_element(By.ID, "sign-out").is_displayed()
    started = rows[0].find_element(By.CSS_SELECTOR, "time")
    assert started.get_attribute("title").endswith(" UTC")  # local time, UTC on hover
    browser.save_screenshot(str(screenshot_dir / "tasks.png"))


def test_a_wrong_password_shows_the_apis_message(browser: WebDriver, console: Console) -> None:
    browser.delete_all_cookies()
    browser.execute_script("sessionStorage.clear()")
    browser.get(console.url + "#/signin")
    # The last sign-in's account and user are filled in; the password has the focus.
    assert browser.switch_to.active_element == element(browser, "#password")
    assert element(browser, "#account").get_attribute("value") == console.tenant.account
    assert element(browser, "#project").get_attribute("value") == console.tenant.region
    type_into(browser, "password", "not-the-password", Keys.ENTER)
    error = wait(browser, lambda d: d.find_element(By.ID, "signin-error").text)
    answer = httpx.post(
        console.server.base_url + "/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": console.tenant.account,
                            "password": "not-the-password",
                            "domain": {"name": console.tenant.account},
                        }
                    },
                }
            }
        },
    )
    assert answer.json()["error"]["message"] in error


def test_blank_fields_say_what_is_missing_instead_of_the_last_error(
    browser: WebDriver, console: Console
) -> None:
    browser.get(console.url + "#/signin")
    type_into(browser, "account", console.tenant.account)
    type_into(browser, "user", console.tenant.account)
    type_into(browser, "password", "not-the-password", Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#signin-error .error-code").text)
    # Now everything blank (the account only spaces): the form says what is missing, not
    # the wrong password of a moment ago, and no request is made.
    type_into(browser, "account", "   ")
    element(browser, "#user").clear()
    type_into(browser, "password", Keys.ENTER)
    wait(
        browser,
        lambda d: (
            d.find_element(By.ID, "signin-error").text
            == "Enter the account, the user name and the password."
        ),
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "#signin-error .error-code")
    assert browser.switch_to.active_element == element(browser, "#account")
    invalid = [
        f.get_attribute("id") for f in browser.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]")
    ]
    assert invalid == ["account", "user", "password"]
    # Filling some in narrows the message to the rest.
    type_into(browser, "account", console.tenant.account)
    type_into(browser, "user", console.tenant.account, Keys.ENTER)
    wait(browser, lambda d: d.find_element(By.ID, "signin-error").text == "Enter the password.")
    assert browser.switch_to.active_element == element(browser, "#password")
    # The token form too.
    click(browser, "details.token-signin summary")
    click(browser, "#token-form button[type=submit]")
    wait(browser, lambda d: d.find_element(By.ID, "signin-error").text == "Enter a token.")


def test_filters_and_the_page_live_in_the_url(browser: WebDriver, console: Console) -> None:
    sign_in(browser, console, console.tenant.account, console.tenant.password)
    wait(browser, lambda d: visible_rows(d, "tasks-table"))
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("SUCCESS")
    wait(browser, lambda d: "status=SUCCESS" in d.current_url)
    wait(browser, lambda d: d.find_element(By.ID, "total-count").text == "18")
    statuses = {r.get_attribute("data-status") for r in visible_rows(browser, "tasks-table")}
    assert statuses == {"SUCCESS"}

    first_page = [r.get_attribute("data-job-id") for r in visible_rows(browser, "tasks-table")]
    browser.find_element(By.ID, "page-next").click()
    wait(browser, lambda d: "offset=10" in d.current_url)
    wait(browser, lambda d: d.find_element(By.ID, "page-info").text.startswith("11\u201318 of"))
    second_page = [r.get_attribute("data-job-id") for r in visible_rows(browser, "tasks-table")]
    assert len(second_page) == 8
    assert not set(first_page) & set(second_page)
    assert min(first_page) > max(second_page)

    # A shared or reloaded URL shows the same view.
    browser.get(browser.current_url)
    browser.refresh()
    wait(browser, lambda d: d.find_element(By.ID, "page-info").text.startswith("11\u201318 of"))
    assert Select(browser.find_element(By.ID, "status-filter")).first_selected_option.text == (
        "SUCCESS"
    )
    assert [r.get_attribute("data-job-id") for r in visible_rows(browser, "tasks-table")] == (
        second_page
    )

    browser.find_element(By.CSS_SELECTOR, "[data-job-type=DELETE_SERVER]").click()
    wait(browser, lambda d: "job_type=DELETE_SERVER" in d.current_url)
    wait(browser, lambda d: d.find_element(By.ID, "total-count").text == "1")


def test_an_empty_filter_says_so(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "#/tasks?job_type=CREATE_SERVER_IMAGE&status=FAILED")
    empty = element(browser, "#tasks-body .state.empty")
    assert "No Create image tasks with status FAILED yet." in empty.text


def test_a_failed_task_shows_its_error_first(
    browser: WebDriver, console: Console, screenshot_dir: Path
) -> None:
    browser.get(console.url + "#/tasks?status=FAILED")
    link = element(browser, f"tr[data-job-id='{console.failed_job_id}'] a")
    link.send_keys(Keys.ENTER)  # links open from the keyboard
    failure = element(browser, "#task-failure")
    assert failure.find_element(By.CSS_SELECTOR, ".error-code").text == FAILURE_CODE
    assert failure.find_element(By.CSS_SELECTOR, ".error-message").text == FAILURE_MESSAGE
    sub_jobs = visible_rows(browser, "sub-jobs-table")
    assert [r.get_attribute("data-status") for r in sub_jobs] == ["FAILED", "SUCCESS"]
    assert "resource-0" in sub_jobs[0].text
    browser.save_screenshot(str(screenshot_dir / "failed-task.png"))
    browser.find_element(By.ID, "back-to-tasks").click()
    wait(browser, lambda d: "status=FAILED" in d.current_url)


def test_an_unknown_task_shows_the_apis_404(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "#/tasks/123456789012345678")
    error = element(browser, "#task-body .state.error")
    assert "WKS.00211902" in error.text
    # Asking again gives the same 404: no "Try again" button that cannot help.
    assert not error.find_elements(By.TAG_NAME, "button")


def test_an_unknown_page_says_so_in_its_title_too(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "#/signin")
    browser.execute_script("sessionStorage.clear()")  # signed in or not, sign in afresh
    sign_in(browser, console, console.tenant.account, console.tenant.password)
    browser.get(console.url + "#/tasks/123456789012345678")
    wait(browser, lambda d: d.title.startswith("Task "))
    browser.get(console.url + "#/no-such-page")
    assert element(browser, "main h1").text == "Not found"
    # The tab kept the previous page's title ("Task 1234…"), so history and a screen
    # reader named a page that was not there.
    assert browser.title == "Not found \N{MIDDLE DOT} imagejobs console"


def test_the_filters_show_what_a_hand_made_url_asks_for(
    browser: WebDriver, console: Console
) -> None:
    # A bookmarked or edited URL with a page size or status the menus do not offer: the
    # list used it (7 rows) while the menus said "10 per page" and "All statuses".
    browser.get(console.url + "#/tasks?limit=7")
    wait(browser, lambda d: len(visible_rows(d, "tasks-table")) == 7)
    size = Select(browser.find_element(By.ID, "page-size"))
    assert size.first_selected_option.get_attribute("value") == "7"
    wait(browser, lambda d: d.find_element(By.ID, "page-info").text.startswith("1\u20137 of"))
    size.select_by_value("20")  # the usual sizes are still there
    wait(browser, lambda d: len(visible_rows(d, "tasks-table")) == 20)
    assert "limit=7" not in browser.current_url

    browser.get(console.url + "#/tasks?status=DONE")
    error = element(browser, "#tasks-body .state.error")
    assert "status must be one of" in error.text  # the API's message, for the value shown
    assert not error.find_elements(By.TAG_NAME, "button")
    status = Select(browser.find_element(By.ID, "status-filter"))
    assert status.first_selected_option.get_attribute("value") == "DONE"
    status.select_by_value("FAILED")
    wait(browser, lambda d: visible_rows(d, "tasks-table"))


def _fill_create_form(browser: WebDriver, name: str) -> None:
    values = {
        "server-name": name,
        "server-image_id": "img-0451",
        "server-product_id": "workspace.x86.a.b",
        "server-vpc_id": "vpc-1",
        "server-subnet_id": "subnet-1",
        "server-account": "alice",
    }
    for field_id, value in values.items():
        field = browser.find_element(By.ID, field_id)
        field.clear()
        field.send_keys(value)


def test_create_a_server_and_watch_its_task_then_delete_it(
    browser: WebDriver, console: Console, screenshot_dir: Path
) -> None:
    browser.get(console.url + "#/servers")
    element(browser, "#servers-body .state.empty")  # no servers yet, and it says so
    browser.execute_script("window.stillTheSamePage = true")
    element(browser, "#open-create").click()

    # The API validates: a bad name gets the API's own message.
    _fill_create_form(browser, "bad name!")
    browser.find_element(By.ID, "create-submit").click()
    error = wait(browser, lambda d: d.find_element(By.ID, "create-error").text)
    assert "WKS.00211102" in error
    # The rule in words, not the pattern's regular expression.
    assert "name must be 1 to 64 characters: Chinese characters, letters, digits, - and _" in (
        error
    )
    assert "^" not in error

    _fill_create_form(browser, "web-01")
    browser.find_element(By.ID, "create-submit").click()
    job_id = attribute(browser, "#started-tasks li", "data-job-id")  # there at once
    assert re.fullmatch(r"\d{18}", job_id)
    task = f"#started-tasks li[data-job-id='{job_id}']"
    wait(browser, lambda d: attribute(d, task, "data-status") == "SUCCESS")
    server_id = attribute(browser, "tr[data-status=ACTIVE]", "data-server-id")
    assert "web-01" in element(browser, f"tr[data-server-id='{server_id}']").text
    assert browser.execute_script("return window.stillTheSamePage") is True  # never reloaded
    browser.save_screenshot(str(screenshot_dir / "servers.png"))

    click(browser, f"[data-key='delete-{server_id}']")
    click(browser, "#dialog-confirm")
    delete_job = attribute(
        browser, f"#started-tasks li:not([data-job-id='{job_id}'])", "data-job-id"
    )
    deleting = f"#started-tasks li[data-job-id='{delete_job}']"
    wait(browser, lambda d: attribute(d, deleting, "data-status") == "SUCCESS")
    element(browser, "#servers-body .state.empty")
    assert browser.execute_script("return window.stillTheSamePage") is True


def test_a_refresh_cycle_costs_one_list_call(browser: WebDriver, console: Console) -> None:
    browser.execute_script("performance.clearResourceTimings()")
    browser.get(console.url + "#/tasks?job_type=DELETE_SERVER&status=RUNNING")
    # The running task keeps the list refreshing by itself.
    wait(
        browser,
        lambda d: int(d.find_element(By.ID, "tasks-body").get_attribute("data-cycles") or 0) >= 3,
    )
    cycles, lists = browser.execute_script(
        "const n = Number(document.getElementById('tasks-body').dataset.cycles);"
        "const urls = performance.getEntriesByType('resource').map((e) => e.name);"
        "return [n, urls.filter((u) => /\\/image-server-jobs(\\?|$)/.test(u)).length];"
    )
    assert cycles <= lists <= cycles + 1  # one ListImageJobs per cycle (+1 in flight)
    assert "job_type=DELETE_SERVER&status=RUNNING" in browser.current_url  # filters kept
    assert attribute(browser, "#tasks-table progress", "value") == "1"
    assert attribute(browser, "#tasks-table progress", "max") == "3"


def test_every_request_stays_on_the_servers_origin(browser: WebDriver, console: Console) -> None:
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert urls
    assert all(u.startswith(console.server.base_url + "/") for u in urls), urls
    csp = httpx.get(console.url).headers["content-security-policy"]
    assert "default-src 'self'" in csp


def test_a_phone_sized_window_needs_no_sideways_scrolling(
    browser: WebDriver, console: Console, screenshot_dir: Path
) -> None:
    browser.set_window_size(390, 844)
    try:
        for view in ("#/tasks", f"#/tasks/{console.failed_job_id}", "#/servers"):
            browser.get(console.url + view)
            element(browser, "table.list, .state.empty")
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, view
            if view.startswith("#/tasks/"):
                # A sub-job's resource: its id under its name, as on a laptop (they were
                # side by side, the name broken over three lines beside the label).
                cell = element(browser, "#sub-jobs-table td[data-label=Resource] .stack")
                name, resource_id = cell.find_elements(By.XPATH, "./div")
                assert resource_id.location["y"] > name.location["y"]
                assert resource_id.location["x"] == name.location["x"]
            if view == "#/tasks":
                browser.save_screenshot(str(screenshot_dir / "tasks-phone.png"))
    finally:
        browser.set_window_size(*LAPTOP)


def test_sign_out_revokes_the_token(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "#/tasks")
    element(browser, "#tasks-table")
    token = browser.execute_script(
        "return JSON.parse(sessionStorage.getItem('imagejobs.console.session')).token"
    )
    sign_out(browser)
    assert "signed out" in browser.find_element(By.ID, "signin-notice").text
    jobs = f"{console.server.base_url}/v1/{console.tenant.project_id}/image-server-jobs"
    answer = httpx.get(jobs, params={"job_type": "CREATE_SERVER"}, headers={"X-Auth-Token": token})
    assert answer.status_code == 401
    browser.get(console.url + "#/servers")  # signed out: back to sign-in
    element(browser, "#password-form")


def test_a_pasted_token_signs_in_and_its_end_returns_to_sign_in(
    browser: WebDriver, console: Console
) -> None:
    base = console.server.base_url
    token = password_token(base, console.tenant)
    browser.get(console.url + "#/signin")
    element(browser, ".token-signin summary").click()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    wait(browser, lambda d: visible_rows(d, "tasks-table"))
    assert console.tenant.account in browser.find_element(By.ID, "top").text

    revoked = httpx.delete(
        base + "/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token}
    )
    assert revoked.status_code == 204
    browser.find_element(By.ID, "refresh").click()
    notice = element(browser, "#signin-notice").text
    jobs = f"{base}/v1/{console.tenant.project_id}/image-server-jobs?job_type=CREATE_SERVER"
    message = httpx.get(jobs, headers={"X-Auth-Token": token}).json()["error_msg"]
    # IAM's words are for SDKs ("decrypt token fail"); a person is told what happened.
    assert message.endswith("decrypt token fail")
    assert notice == (
        "Your session has ended: your sign-in was revoked or is no longer known here. "
        "Please sign in again."
    )


def test_a_read_only_user_sees_the_list_but_may_not_delete(
    browser: WebDriver, console: Console
) -> None:
    base = console.server.base_url
    root = password_token(base, console.tenant)
    servers = f"{base}/v1/{console.tenant.project_id}/image-servers"
    body = {
        "name": "kept",
        "image_ref": {"id": "img-1", "image_type": "public"},
        "root_volume": {"type": "SSD", "size": 80},
        "vpc_id": "v",
        "subnet_id": "s",
        "product_id": "workspace.x86.a.b",
        "authorize_accounts": [{"account": "alice", "account_type": "USER"}],
    }
    assert httpx.post(servers, json=body, headers={"X-Auth-Token": root}).status_code == 200

    sign_in(browser, console, READER, console.reader_password)
    assert len(wait(browser, lambda d: visible_rows(d, "tasks-table"))) == 10
    browser.get(console.url + "#/servers")
    server_id = attribute(browser, "tr[data-status=ACTIVE]", "data-server-id")
    click(browser, f"[data-key='delete-{server_id}']")
    click(browser, "#dialog-confirm")
    refusal = wait(browser, lambda d: d.find_element(By.ID, "dialog-error").text)

    reader = password_token(base, console.tenant, READER, console.reader_password)
    answer = httpx.patch(
        servers + "/actions/batch-delete",
        json={"items": [server_id]},
        headers={"X-Auth-Token": reader},
    )
    assert answer.status_code == 403
    assert answer.json()["error_code"] in refusal
    assert answer.json()["error_msg"] in refusal
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)  # closes the dialog
    # The focus goes back to the Delete button (found again if the list was redrawn).
    wait(
        browser,
        lambda d: d.switch_to.active_element.get_attribute("data-key") == f"delete-{server_id}",
    )
    sign_out(browser)


def test_closing_the_create_form_gives_the_focus_back_to_its_button(
    browser: WebDriver, console: Console
) -> None:
    sign_in(browser, console, console.tenant.account, console.tenant.password)
    browser.get(console.url + "#/servers")
    opener = element(browser, "#open-create")
    assert opener.get_attribute("aria-expanded") == "false"
    opener.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element == element(browser, "#server-name")
    assert opener.get_attribute("aria-expanded") == "true"
    cancel = browser.find_element(By.CSS_SELECTOR, "#create-form .form-actions .ghost")
    cancel.send_keys(Keys.ENTER)  # the keyboard user's Cancel
    wait(browser, lambda d: not d.find_element(By.ID, "create-panel").is_displayed())
    # The focus was on the hidden Cancel button and fell to the top of the page.
    assert browser.switch_to.active_element == opener
    assert opener.get_attribute("aria-expanded") == "false"
