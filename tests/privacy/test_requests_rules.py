"""The pure rules of data-subject requests: deadlines (with property tests of the calendar
arithmetic), jurisdictions, the status machine, extensions, reminders, codes, signed links,
the requester's input and the mails."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.config import PrivacySettings
from consentry.consent import links
from consentry.errors import Conflict, Invalid
from consentry.privacy import requests as rq

T0 = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
RULES = rq.DEFAULT_RULES
GDPR = RULES.jurisdiction(rq.GDPR)
CCPA = RULES.jurisdiction(rq.CCPA)

moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2400, 12, 31), timezones=st.just(UTC)
)
months = st.integers(min_value=0, max_value=48)


# --- calendar months ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (datetime(2026, 1, 31), 1, datetime(2026, 2, 28)),
        (datetime(2028, 1, 31), 1, datetime(2028, 2, 29)),  # a leap year
        (datetime(2026, 3, 31), 1, datetime(2026, 4, 30)),
        (datetime(2026, 1, 15), 1, datetime(2026, 2, 15)),
        (datetime(2026, 12, 31), 1, datetime(2027, 1, 31)),
        (datetime(2026, 11, 30), 3, datetime(2027, 2, 28)),
        (datetime(2026, 5, 10), 0, datetime(2026, 5, 10)),
    ],
)
def test_a_calendar_month_clamps_to_the_end_of_a_shorter_month(
    start: datetime, n: int, expected: datetime
) -> None:
    assert rq.add_months(start, n) == expected


@given(moments, months)
def test_add_months_moves_exactly_n_months_and_keeps_the_day_or_the_month_end(
    start: datetime, n: int
) -> None:
    end = rq.add_months(start, n)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == n
    last = calendar.monthrange(end.year, end.month)[1]
    assert end.day == start.day or (end.day == last and start.day > last)
    assert end.time() == start.time() and end.tzinfo == start.tzinfo


@given(moments, moments, months)
def test_add_months_keeps_order(a: datetime, b: datetime, n: int) -> None:
    first, second = sorted((a, b))
    assert rq.add_months(first, n) <= rq.add_months(second, n)


@given(moments, months, months)
def test_months_added_in_two_steps_never_pass_one_step(start: datetime, a: int, b: int) -> None:
    assert rq.add_months(rq.add_months(start, a), b) <= rq.add_months(start, a + b)


@given(moments)
def test_due_dates_follow_receipt_and_an_extension_only_moves_them_later(
    received: datetime,
) -> None:
    for law in (GDPR, CCPA):
        due = rq.due_at(received, law)
        extended = rq.extended_due_at(received, law)
        assert received < due < extended
    assert rq.due_at(received, CCPA) == received + timedelta(days=45)
    assert rq.extended_due_at(received, CCPA) == received + timedelta(days=90)
    assert rq.extended_due_at(received, GDPR) == rq.add_months(received, 3)


@given(moments, st.integers(min_value=-400, max_value=400))
def test_days_left_counts_calendar_days_and_falls_as_time_passes(
    due: datetime, offset: int
) -> None:
    now = due - timedelta(days=offset)
    assert rq.days_left(due, now) == offset
    later = now + timedelta(hours=7)
    assert rq.days_left(due, later) <= rq.days_left(due, now)


def test_days_left_is_in_utc_whatever_the_zone_of_the_times() -> None:
    due = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    paris_evening = datetime(2026, 2, 28, 23, 0, tzinfo=timezone(timedelta(hours=1)))
    assert rq.days_left(due, paris_evening) == 1  # 22:00 UTC on the 28th
    assert rq.days_left(due, due) == 0 and not rq.is_overdue(due, due)
    assert rq.is_overdue(due, due + timedelta(seconds=1))


# --- jurisdictions and settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "expected"),
    [("DE", "gdpr"), ("IE", "gdpr"), ("NO", "gdpr"), ("GB", "gdpr"), ("CH", "gdpr")]
    + [("US", "ccpa"), ("BR", "gdpr"), (None, "gdpr")],
)
def test_the_country_picks_the_law(country: str | None, expected: str) -> None:
    assert rq.jurisdiction_for(country, rq.GDPR) == expected


def test_the_default_applies_outside_the_eu_and_us() -> None:
    assert rq.jurisdiction_for("JP", rq.CCPA) == rq.CCPA
    assert rq.jurisdiction_for("FR", rq.CCPA) == rq.GDPR


def test_deadlines_come_from_the_settings() -> None:
    rules = rq.rules_from(
        PrivacySettings(
            gdpr_months=2, ccpa_days=30, ccpa_extension_days=0, reminder_days=[2, 7, 7, 0]
        )
    )
    assert rq.due_at(T0, rules.jurisdiction(rq.GDPR)) == datetime(2026, 3, 31, 9, 30, tzinfo=UTC)
    assert rq.due_at(T0, rules.jurisdiction(rq.CCPA)) == T0 + timedelta(days=30)
    assert rules.reminder_days == (7, 2, 0)
    with pytest.raises(ValueError, match="reminder_days"):
        PrivacySettings(reminder_days=[-1])


def test_the_defaults_are_one_month_plus_two_and_45_plus_45_days() -> None:
    assert rq.due_at(T0, GDPR) == datetime(2026, 2, 28, 9, 30, tzinfo=UTC)
    assert rq.extended_due_at(T0, GDPR) == datetime(2026, 4, 30, 9, 30, tzinfo=UTC)
    assert (CCPA.response, CCPA.extension) == (rq.Period(days=45), rq.Period(days=45))


# --- the status machine -------------------------------------------------------------------------


def test_the_happy_path() -> None:
    status = rq.UNVERIFIED
    for action, expected in (
        ("verify", rq.VERIFIED),
        ("start", rq.IN_PROGRESS),
        ("complete", rq.COMPLETED),
    ):
        status = rq.next_status(status, action)
        assert status == expected


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (rq.UNVERIFIED, "start"),
        (rq.UNVERIFIED, "complete"),
        (rq.VERIFIED, "complete"),
        (rq.VERIFIED, "verify"),
        (rq.VERIFIED, "expire"),
        (rq.IN_PROGRESS, "start"),
        (rq.COMPLETED, "reject"),
        (rq.REJECTED, "start"),
        (rq.EXPIRED, "verify"),
    ],
)
def test_illegal_moves_are_conflicts_naming_the_current_status(status: str, action: str) -> None:
    with pytest.raises(Conflict) as refused:
        rq.next_status(status, action)
    assert f"the request is {status};" in refused.value.message


@given(st.sampled_from(rq.STATUSES), st.sampled_from(sorted(rq.TRANSITIONS)))
def test_closed_requests_never_move_and_every_move_lands_on_a_status(
    status: str, action: str
) -> None:
    try:
        target = rq.next_status(status, action)
    except Conflict:
        assert status not in rq.TRANSITIONS[action][0]
        return
    assert status in rq.OPEN and target in rq.STATUSES


def test_expiry_and_rejection() -> None:
    assert rq.next_status(rq.UNVERIFIED, "expire") == rq.EXPIRED
    for status in (rq.UNVERIFIED, rq.VERIFIED, rq.IN_PROGRESS):
        assert rq.next_status(status, "reject") == rq.REJECTED


def _extend(**changes: object) -> datetime:
    values: dict[str, object] = {
        "status": rq.IN_PROGRESS,
        "extended": False,
        "received_at": T0,
        "due": rq.due_at(T0, GDPR),
        "now": T0 + timedelta(days=10),
        "jurisdiction": GDPR,
    }
    values.update(changes)
    return rq.extension_due(**values)  # type: ignore[arg-type]


def test_an_extension_is_granted_once_while_open_and_before_the_deadline() -> None:
    assert _extend() == datetime(2026, 4, 30, 9, 30, tzinfo=UTC)
    with pytest.raises(Conflict, match="extended already"):
        _extend(extended=True)
    with pytest.raises(Conflict, match="the request is unverified"):
        _extend(status=rq.UNVERIFIED)
    with pytest.raises(Conflict, match="the request is completed"):
        _extend(status=rq.COMPLETED)
    with pytest.raises(Conflict, match="deadline passed on 2026-02-28"):
        _extend(now=T0 + timedelta(days=40))
    none = rq.Jurisdiction(rq.CCPA, rq.Period(days=45), rq.Period())
    with pytest.raises(Conflict, match="allows no extension"):
        _extend(jurisdiction=none)


# --- reminders ----------------------------------------------------------------------------------


def test_each_reminder_step_is_due_once() -> None:
    due = T0 + timedelta(days=20)
    steps = (7, 2)
    assert rq.reminder_step(due, due - timedelta(days=8), steps, ()) == (None, ())
    assert rq.reminder_step(due, due - timedelta(days=7), steps, ()) == (7, (7,))
    assert rq.reminder_step(due, due - timedelta(days=5), steps, (7,)) == (None, ())
    assert rq.reminder_step(due, due - timedelta(days=2), steps, (7,)) == (2, (2,))
    assert rq.reminder_step(due, due + timedelta(days=3), steps, (7, 2)) == (None, ())


def test_steps_missed_together_make_one_reminder_for_the_nearest() -> None:
    due = T0 + timedelta(days=20)
    assert rq.reminder_step(due, due - timedelta(days=1), (7, 2, 0), ()) == (2, (7, 2))
    assert rq.reminder_step(due, due + timedelta(days=2), (7, 2, 0), (7,)) == (0, (2, 0))


@given(
    moments,
    st.integers(min_value=-30, max_value=60),
    st.lists(st.integers(min_value=0, max_value=30), max_size=5),
)
def test_a_reminder_is_never_sent_twice(due: datetime, left: int, steps: list[int]) -> None:
    now = due - timedelta(days=left)
    step, settles = rq.reminder_step(due, now, steps, ())
    if step is None:
        assert settles == ()
        return
    assert step == min(settles) and all(left <= s for s in settles)
    assert rq.reminder_step(due, now, steps, settles) == (None, ())


# --- the requester ------------------------------------------------------------------------------


def test_the_email_is_normalised_like_the_profiles() -> None:
    assert rq.requester_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    assert rq.requester_email("ｊｏｅ@example.com") == "joe@example.com"  # NFKC


@pytest.mark.parametrize(
    "bad", ["", "ada", "ada@", "@example.com", "a@b@example.com", "ada @example.com", "é@x.com"]
)
def test_bad_emails_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(Invalid) as refused:
        rq.requester_email(bad)
    assert [e.field for e in refused.value.errors] == ["email"]


def test_type_country_and_message_are_checked() -> None:
    assert rq.request_type(" Erasure ") == "erasure"
    assert rq.requester_country("uk") == "GB" and rq.requester_country(" ") is None
    assert rq.message_text("  fix my\r\nname ") == "fix my\nname"
    for check, value, field in (
        (rq.request_type, "delete_everything", "type"),
        (rq.requester_country, "XX", "country"),
        (rq.message_text, "x" * 2001, "message"),
        (rq.message_text, "bell\x07", "message"),
    ):
        with pytest.raises(Invalid) as refused:
            check(value)  # type: ignore[operator]
        assert refused.value.errors[0].field == field
    assert set(rq.TYPES) == {
        "access",
        "portability",
        "rectification",
        "erasure",
        "restriction",
        "objection",
        "opt_out_sale",
    }


# --- codes and links ----------------------------------------------------------------------------


def test_codes_are_six_digits_stored_as_a_keyed_digest() -> None:
    codes = {rq.new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    key = rq.code_key("secret", "ws-a")
    stored = rq.code_digest(key, "rq-1", "123456")
    assert "123456" not in stored and len(stored) == 64
    assert rq.code_matches(key, "rq-1", "123456", stored)
    assert not rq.code_matches(key, "rq-1", "123457", stored)
    assert not rq.code_matches(key, "rq-2", "123456", stored)  # bound to its request
    assert not rq.code_matches(rq.code_key("secret", "ws-b"), "rq-1", "123456", stored)
    assert not rq.code_matches(key, "rq-1", "12345", stored)
    assert not rq.code_matches(key, "rq-1", "123456", None)


def test_a_code_dies_after_its_attempts_or_its_time() -> None:
    later = T0 + timedelta(hours=1)
    assert rq.code_problem(expires_at=later, attempts=4, max_attempts=5, now=T0) is None
    assert rq.code_problem(expires_at=later, attempts=5, max_attempts=5, now=T0) == rq.EXHAUSTED
    assert rq.code_problem(expires_at=T0, attempts=0, max_attempts=5, now=T0) == rq.EXPIRED_CODE
    assert rq.code_problem(expires_at=None, attempts=0, max_attempts=5, now=T0) == rq.EXPIRED_CODE


def test_links_are_signed_per_workspace_and_expire() -> None:
    token = rq.sign_link(
        "secret", workspace_id="ws-a", request_id="rq-1", code_ref="abcd", expires_at=T0
    )
    link = rq.read_link("secret", token, T0 - timedelta(seconds=1))
    assert (link.workspace_id, link.request_id, link.code_ref) == ("ws-a", "rq-1", "abcd")
    with pytest.raises(rq.LinkError) as expired:
        rq.read_link("secret", token, T0)
    assert expired.value.reason == "expired"
    with pytest.raises(rq.LinkError) as forged:
        rq.read_link("another secret", token, T0 - timedelta(days=1))
    assert forged.value.reason == "forged"
    body, mac = token.split(".")
    other = rq.sign_link(
        "secret", workspace_id="ws-b", request_id="rq-1", code_ref="abcd", expires_at=T0
    )
    with pytest.raises(rq.LinkError):  # another workspace's signature on this payload
        rq.read_link("secret", f"{body}.{other.split('.')[1]}", T0 - timedelta(days=1))
    for junk in ("", "x", "a.b.c", f"{body}.{mac}x", f"{body}=.{mac}", "é.é"):
        with pytest.raises(rq.LinkError):
            rq.read_link("secret", junk, T0 - timedelta(days=1))


def test_verification_links_and_consent_links_are_signed_apart() -> None:
    before = T0 - timedelta(days=1)
    token = rq.sign_link(
        "secret", workspace_id="ws-a", request_id="rq-1", code_ref="abcd", expires_at=T0
    )
    with pytest.raises(links.LinkError) as as_page:  # opens no consent page
        links.read("secret", token, kind=links.PREFERENCES, now=before)
    assert as_page.value.reason == "forged"
    page = links.sign(
        links.link_key("secret", "ws-a"),
        workspace_id="ws-a",
        profile_id="rq-1",
        kind=links.PREFERENCES,
        now=before,
    )
    with pytest.raises(rq.LinkError) as as_verification:  # and verifies no request
        rq.read_link("secret", page, before)
    assert as_verification.value.reason == "forged"


def test_request_ids() -> None:
    made = rq.new_request_id()
    assert rq.is_request_id(made) and len(made) == 35 and made != rq.new_request_id()


# --- the queue and mails ------------------------------------------------------------------------


def _request(request_id: str, due: datetime, status: str = rq.VERIFIED) -> rq.Request:
    return rq.Request(
        id=request_id,
        workspace_id="ws",
        type="access",
        status=status,
        jurisdiction=rq.GDPR,
        country=None,
        source=rq.SOURCE_FORM,
        profile_id=None,
        received_at=T0,
        due_at=due,
        original_due_at=due,
        verify_by=T0 + timedelta(days=14),
        extended=False,
        extension_reason=None,
        verified_at=None,
        verified_by=None,
        closed_at=None,
        resolution=None,
        duplicate_of=None,
    )


def test_the_queue_puts_overdue_first_then_the_nearest_due_date() -> None:
    now = T0 + timedelta(days=30)
    late = _request("rq-late", now - timedelta(days=2))
    later = _request("rq-later", now - timedelta(days=1))
    soon = _request("rq-soon", now + timedelta(days=1))
    far = _request("rq-far", now + timedelta(days=9))
    done = _request("rq-done", now - timedelta(days=5), rq.COMPLETED)
    order = rq.queue_order([far, soon, done, later, late], now)
    assert [r.id for r in order] == ["rq-late", "rq-later", "rq-done", "rq-soon", "rq-far"]
    shown = rq.request_json(late, now)
    assert shown["days_left"] == -2 and shown["overdue"] is True
    assert rq.request_json(done, now)["days_left"] is None


def test_mails_name_the_code_and_link_and_escape_html() -> None:
    mail = rq.verification_mail(
        brand="<Shop>",
        request_type="erasure",
        code="012345",
        url="https://x/dsr/t?a=1&b=2",
        expires_at=T0,
    )
    assert "012345" in mail.text and "https://x/dsr/t?a=1&b=2" in mail.text
    assert "&lt;Shop&gt;" in mail.html and "<Shop>" not in mail.html
    assert 'href="https://x/dsr/t?a=1&amp;b=2"' in mail.html
    reminder = rq.reminder_mail(
        brand="Shop",
        workspace_id="ws",
        due=[(_request("rq-a", T0 - timedelta(days=1)), 0), (_request("rq-b", T0), 2)],
        now=T0,
        url="https://x/app/privacy/requests",
    )
    assert "rq-a" in reminder.text and "overdue by 1 day" in reminder.text
    assert "due today" in reminder.text and "@" not in reminder.text
