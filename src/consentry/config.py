"""Settings, read from the environment (prefix ``CONSENTRY_``) and an optional ``.env`` file.

Only ``api.py`` and ``cli.py`` call :func:`get_settings`; everything else receives what it needs as
arguments. Sections are nested models; a nested value is set with a double underscore, for example
``CONSENTRY_INGEST__MAX_BATCH_MESSAGES=1000``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///consentry.db"
PLACEHOLDER_SECRET = "change-me"  # noqa: S105 - the placeholder that is refused outside development


class IngestSettings(BaseModel):
    """Limits of the Segment-compatible ingestion API."""

    max_message_bytes: int = Field(32 * 1024, description="Largest single message, in bytes.")
    max_batch_bytes: int = Field(500 * 1024, description="Largest request body after gunzip.")
    max_batch_messages: int = Field(2500, description="Most messages in one batch.")
    worker_process: bool = Field(
        True,
        description="Expand and apply acknowledged events in an ingest worker process of "
        "their own, which the server starts (its second core); false: in the server's own "
        "ingest writer thread, between requests.",
    )
    spool_url: str | None = Field(
        None,
        description="Where acknowledged requests wait to be expanded into events: default "
        "the file <db>.spool.db beside an SQLite store, the database <name>_spool on "
        "PostgreSQL.",
    )


class IdentitySettings(BaseModel):
    """Caps on identifiers per unified profile; a merge that would break one is refused."""

    max_user_ids: int = Field(1, ge=1, description="userIds per profile (1 keeps people apart).")
    max_emails: int = Field(5, ge=1)
    max_phones: int = Field(5, ge=1)
    max_anonymous_ids: int = Field(100, ge=1)
    max_external_ids: int = Field(10, ge=1, description="Per external id type.")

    def cap(self, identifier_type: str) -> int:
        """Return the cap for an identifier type."""
        return {
            "user_id": self.max_user_ids,
            "email": self.max_emails,
            "phone": self.max_phones,
            "anonymous_id": self.max_anonymous_ids,
        }.get(identifier_type, self.max_external_ids)


class DedupeSettings(BaseModel):
    """Probabilistic de-duplication of profiles (docs/identity.md): where a pair of profiles
    merges by itself, where it goes to review, and the scheduled incremental run."""

    auto_merge_threshold: float = Field(
        0.95, gt=0, lt=1, description="Pairs at or above this match probability merge at once."
    )
    review_threshold: float = Field(
        0.5, gt=0, lt=1, description="Pairs from here up to the auto-merge threshold go to review."
    )
    batch_size: int = Field(
        5000,
        ge=100,
        le=20_000,  # profiles.bulk reads past 20,000 ids by scanning the whole workspace
        description="Profiles read from the store at a time.",
    )
    read_workers: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Processes that read, open and key the profiles of a run over 50,000 profiles"
            " (0: one per core; 1: read in the running process)."
        ),
    )

    def reader_processes(self) -> int:
        """How many processes read a large run's profiles."""
        return self.read_workers or os.cpu_count() or 1

    scheduled: bool = Field(
        True,
        description="The server runs an incremental dedupe of each workspace that had a batch run.",
    )
    interval_hours: float = Field(
        6.0, gt=0, le=24 * 31, description="Hours between scheduled incremental runs."
    )

    @model_validator(mode="after")
    def _ordered(self) -> DedupeSettings:
        if self.review_threshold > self.auto_merge_threshold:
            raise ValueError("review_threshold must not exceed auto_merge_threshold")
        return self


class SmtpSettings(BaseModel):
    """The SMTP server that customer email (double opt-in confirmations) is handed to.

    ``security``: ``none`` (a local relay), ``starttls`` (usually port 587) or ``ssl`` (implicit
    TLS, usually port 465). The password is a secret: it is never logged nor shown.
    """

    host: str = Field("localhost", description="SMTP server or relay host name.")
    port: int = Field(25, ge=1, le=65535)
    username: str | None = Field(None, description="Log in with this user when set.")
    password: SecretStr | None = Field(None, description="Password of username; never logged.")
    security: Literal["none", "starttls", "ssl"] = Field("none", description="TLS mode.")
    from_address: str = Field("consentry@localhost", description="Envelope sender and From.")
    from_name: str | None = Field(None, description="Display name of From; the workspace's.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds per SMTP operation.")


class DoubleOptInSettings(BaseModel):
    """Confirmation links sent for double opt-in."""

    link_ttl_hours: int = Field(48, ge=1, le=24 * 30, description="How long a link works.")
    preference_center: bool = Field(
        True,
        description="Under the opt-in regime, an email grant made on the preference center "
        "becomes a pending request confirmed from a mail (double opt-in).",
    )


class CryptoSettings(BaseModel):
    """Encryption of personal data at rest (see docs/privacy.md)."""

    master_keys: str = Field(
        "",
        repr=False,
        description="Master keys wrapping the data keys, 'id:base64key,...'; the first is "
        "current, older ones stay to read keys not yet re-wrapped (consentry keys rotate). "
        "Empty in development and test: keys derived from CONSENTRY_SECRET_KEY.",
    )
    blind_index_key: str = Field(
        "", repr=False, description="Base64 key of the blind indexes (equality look-ups)."
    )
    keystore_url: str | None = Field(
        None,
        description="Where wrapped data keys live, apart from the data: default the file "
        "<db>.keys.db beside an SQLite store, the database <name>_keys on PostgreSQL.",
    )


class PrivacySettings(BaseModel):
    """Data-subject requests (docs/privacy-requests.md): the deadline of each jurisdiction, the
    verification of the requester, reminders and who receives them.

    Lists and mappings are set as JSON, e.g. ``CONSENTRY_PRIVACY__REMINDER_DAYS='[7, 2, 0]'``
    or ``CONSENTRY_PRIVACY__CONTACTS='{"acme-eu": "dpo@acme.example"}'``.
    """

    gdpr_months: int = Field(1, ge=1, le=12, description="GDPR: answer within N months.")
    gdpr_extension_months: int = Field(
        2, ge=0, le=12, description="GDPR: the extension (once, the person told why), in months."
    )
    ccpa_days: int = Field(45, ge=1, le=365, description="CCPA: answer within N days.")
    ccpa_extension_days: int = Field(45, ge=0, le=365, description="CCPA: the extension, days.")
    default_jurisdiction: Literal["gdpr", "ccpa"] = Field(
        "gdpr", description="For a country outside the EU/EEA, UK, CH and US, or none given."
    )
    reminder_days: list[int] = Field(
        [7, 2],
        max_length=10,
        description="Remind the privacy contact this many days before a due date (0: on the "
        "day or once overdue); each step is mailed once per request.",
    )
    verification_days: int = Field(
        14, ge=1, le=90, description="An unverified request expires after N days."
    )
    code_ttl_hours: int = Field(
        72, ge=1, le=24 * 90, description="How long a verification code and link work."
    )
    code_attempts: int = Field(5, ge=1, le=20, description="Wrong codes before a code is dead.")
    max_codes: int = Field(5, ge=1, le=20, description="Codes mailed per request, at most.")
    # limits of the public form and API (docs/privacy-requests.md); a count of 0: no limit
    limit_per_email: int = Field(
        5, ge=0, le=1000, description="Requests filed for one email address per window."
    )
    limit_email_hours: int = Field(
        24, ge=1, le=24 * 31, description="The window of limit_per_email, in hours."
    )
    limit_per_network: int = Field(
        20,
        ge=0,
        le=100_000,
        description="Requests filed and new codes asked for from one client network (IPv4 "
        "/24, IPv6 /48) per window.",
    )
    limit_network_minutes: int = Field(
        60, ge=1, le=60 * 24 * 31, description="The window of limit_per_network, in minutes."
    )
    limit_resends: int = Field(
        3, ge=0, le=100, description="New codes asked for one request per window."
    )
    limit_resend_minutes: int = Field(
        60, ge=1, le=60 * 24 * 31, description="The window of limit_resends, in minutes."
    )
    limit_codes_per_network: int = Field(
        30, ge=0, le=100_000, description="Codes tried from one client network per window."
    )
    limit_code_minutes: int = Field(
        60, ge=1, le=60 * 24 * 31, description="The window of limit_codes_per_network, minutes."
    )
    contact_email: str | None = Field(
        None,
        max_length=320,
        description="Who receives reminders when the workspace has no entry in contacts "
        "(else the workspace's support email from the consent branding).",
    )
    contacts: dict[str, str] = Field(
        default_factory=dict, description="Privacy contact per workspace id (reminders)."
    )

    @model_validator(mode="after")
    def _check_reminders(self) -> PrivacySettings:
        if any(d < 0 or d > 365 for d in self.reminder_days):
            raise ValueError("reminder_days: each a number of days from 0 to 365")
        return self


class ErasureSettings(BaseModel):
    """Erasure of a person (docs/erasure.md)."""

    order_hold_days: int = Field(
        3650,
        ge=0,
        le=36500,
        description="Orders placed within this many days are kept pseudonymised when their "
        "customer is erased (the legal hold of invoice data); 0 erases them too.",
    )
    webhook_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often the server retries processors' webhooks."
    )

    @property
    def order_hold(self) -> timedelta | None:
        """The legal hold as the erasure takes it (None: no hold)."""
        return timedelta(days=self.order_hold_days) if self.order_hold_days else None


class RetentionSettings(BaseModel):
    """Scheduled retention runs (docs/retention.md); the periods are set per workspace."""

    scheduled: bool = Field(True, description="The server runs every workspace's policy.")
    interval_hours: float = Field(24.0, gt=0, le=24 * 31, description="Hours between runs.")


class AnalyticsSettings(BaseModel):
    """Customer analytics (docs/analytics.md): engine, money, model horizon, schedule."""

    engine: Literal["duckdb", "spark"] = Field(
        "duckdb", description="duckdb: in-process; spark: a local Apache Spark (Java 17+)."
    )
    memory_limit: str = Field("2GB", description="DuckDB's memory cap; it spills to disk past it.")
    currency: str = Field(
        "USD", min_length=3, max_length=3, description="Reporting currency of money metrics."
    )
    fx_rates: dict[str, float] = Field(
        default_factory=dict,
        description="Units of the reporting currency one unit of another is worth, e.g. "
        '{"EUR": 1.08}. Orders in a currency without a rate are left out and counted.',
    )
    clv_months: int = Field(12, ge=1, le=120, description="Horizon of customer lifetime value.")
    monthly_discount: float = Field(
        0.01, ge=0, lt=1, description="Monthly discount rate of future spend (0.01 = 1 %)."
    )
    min_customers: int = Field(
        50, ge=2, description="Fewer customers than this: RFM only, no CLV model."
    )
    fit_sample: int = Field(
        250_000,
        ge=1_000,
        description="The CLV models' parameters are fitted on a random sample of this many "
        "customers when there are more (every customer is still scored).",
    )
    abandoned_cart_minutes: int = Field(
        60, ge=1, description="A cart untouched this long and not converted is abandoned."
    )
    scheduled: bool = Field(True, description="The server runs analytics on a schedule.")
    interval_hours: float = Field(24.0, gt=0, le=24 * 31, description="Hours between runs.")


class RecommendSettings(BaseModel):
    """Product recommendations (docs/recommend.md): what the models learn from, the business
    rules applied when serving, how many trained versions are kept, the schedule."""

    view_weight: float = Field(1.0, ge=0, description="Weight of a Product Viewed event.")
    cart_weight: float = Field(3.0, ge=0, description="Weight of a Product Added event.")
    order_weight: float = Field(10.0, ge=0, description="Weight of an ordered product.")
    browsing_days: int = Field(
        180, ge=1, le=3650, description="Views and cart adds of the last this many days count."
    )
    neighbours: int = Field(100, ge=5, le=500, description="Neighbours kept per product.")
    half_life_days: float = Field(
        60.0, gt=0, description="Half-life of a purchase in the buy-again score."
    )
    top_n: int = Field(
        100, ge=10, le=500, description="Products precomputed per customer (the most served)."
    )
    replenishable_repeat_rate: float = Field(
        0.15,
        ge=0,
        le=1,
        description="A product whose order lines are re-purchases at least this often is "
        "replenishable: recommended again to its buyers; other products are not.",
    )
    max_per_category: int | None = Field(
        3, ge=1, description="Diversity: at most this many products of one category per list."
    )
    category_factors: dict[str, float] = Field(
        default_factory=dict,
        description='Boost (> 1) or bury (< 1) categories by name, e.g. {"Sale": 1.5}.',
    )
    evaluate: bool = Field(
        True, description="Measure recall@10 and NDCG@10 on each customer's last order."
    )
    keep_versions: int = Field(5, ge=1, le=100, description="Trained versions kept for rollback.")
    scheduled: bool = Field(True, description="The server retrains every workspace's model.")
    interval_hours: float = Field(24.0, gt=0, le=24 * 31, description="Hours between trainings.")


class QualitySettings(BaseModel):
    """Data-quality audits of the profiles (docs/quality.md): what counts as stale, the
    schedule, how many reports are kept."""

    stale_days: int = Field(
        365, ge=1, le=36500, description="A profile not seen for this many days is stale."
    )
    scheduled: bool = Field(True, description="The server audits every workspace on a schedule.")
    interval_hours: float = Field(24.0, gt=0, le=24 * 31, description="Hours between audits.")
    keep_audits: int = Field(100, ge=1, le=10_000, description="Reports kept per workspace.")


class AudienceSettings(BaseModel):
    """Segment membership kept current (docs/segments.md): the incremental catch-up after new
    events, consent records and merges, and the full refresh that follows sliding windows."""

    scheduled: bool = Field(True, description="The server keeps segment membership current.")
    catch_up_seconds: float = Field(
        5.0, gt=0, le=3600, description="Seconds between two incremental catch-ups."
    )
    refresh_minutes: float = Field(
        15.0, gt=0, le=7 * 24 * 60, description="Minutes between two full refreshes."
    )


class AudienceExportSettings(BaseModel):
    """Audience exports (docs/audience-exports.md): the k of the k-anonymous summaries, and how
    many subjects are read, decided and written at a time."""

    k_anonymity: int = Field(
        10,
        ge=2,
        le=100_000,
        description="Summary cells with fewer subjects than this are suppressed; an export may "
        "ask for a larger k, never a smaller one.",
    )
    batch: int = Field(
        5000, ge=1, le=100_000, description="Subjects decided and written per batch."
    )
    push_batch: int = Field(
        1000, ge=1, le=10_000, description="Hashed rows per webhook message of a partner push."
    )
    max_profile_ids: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Profile ids one API request may list (larger audiences: a segment, or the "
        "CLI's --profiles-file).",
    )


class JourneySettings(BaseModel):
    """The journey engine (docs/journeys.md): how often it runs, and the guard rails every
    journey's sends obey (quiet hours in the customer's time zone, frequency caps per channel).
    """

    scheduled: bool = Field(True, description="The server runs the journeys on a schedule.")
    tick_seconds: float = Field(
        5.0, gt=0, le=3600, description="Seconds between two rounds of triggers and due steps."
    )
    trigger_batch: int = Field(
        10_000, ge=1, le=100_000, description="Events (and segment changes) read per round."
    )
    step_batch: int = Field(
        1000, ge=1, le=100_000, description="Due enrollments advanced per round, at most."
    )
    quiet_hours: str = Field(
        "21:00-08:00",
        description='Local hours nothing is sent in, "HH:MM-HH:MM" (may wrap midnight); "off".',
    )
    default_timezone: str = Field(
        "UTC", description="Time zone of a customer whose timezone trait is missing or unknown."
    )
    frequency_caps: dict[str, str] = Field(
        {"email": "3/7d", "sms": "2/7d", "push": "3/7d", "phone": "1/7d"},
        description='Most messages per channel per window, "N/Dd" (e.g. "3/7d"); unlisted '
        "channels are not capped.",
    )
    max_trigger_age_hours: float = Field(
        48.0,
        gt=0,
        le=24 * 365,
        description="Events older than this when read (an import of history) trigger nothing.",
    )
    scan_minutes: float = Field(
        60.0, gt=0, le=24 * 60, description="Minutes between date-trait and inactivity scans."
    )

    @model_validator(mode="after")
    def _guard_rails_parse(self) -> JourneySettings:
        from consentry.journeys.models import FrequencyCap, QuietHours, zone_of

        QuietHours.parse(self.quiet_hours)  # ValueError names the expected form
        for channel, cap in self.frequency_caps.items():
            FrequencyCap.parse(channel, cap)
        if zone_of(self.default_timezone, "").key != self.default_timezone:
            raise ValueError(f"unknown time zone: {self.default_timezone}")
        return self


class DeliverySettings(BaseModel):
    """The outbox's delivery (docs/delivery.md): how often it runs, how hard it retries, how
    much one destination may take of a round and when a failing one is paused."""

    scheduled: bool = Field(True, description="The server delivers the outbox on a schedule.")
    interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often the server delivers what is due."
    )
    batch: int = Field(500, ge=1, le=10_000, description="Messages one round sends, at most.")
    max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts before a message goes to the dead-letter list."
    )
    backoff_base_seconds: float = Field(
        30.0, gt=0, le=86_400, description="Wait after the first failure; doubled each time."
    )
    backoff_max_seconds: float = Field(
        6 * 3600.0, gt=0, le=7 * 86_400, description="Longest wait between two attempts."
    )
    per_destination_cap: int = Field(
        100, ge=1, le=10_000, description="Messages one destination may take of a round."
    )
    circuit_threshold: int = Field(
        5,
        ge=1,
        le=1000,
        description="Consecutive failures after which a destination is paused (its circuit).",
    )
    circuit_pause_seconds: float = Field(
        60.0, gt=0, le=86_400, description="First pause of a tripped destination; doubled after."
    )
    lease_seconds: float = Field(
        300.0, ge=5, le=86_400, description="How long a claimed message is a worker's alone."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Seconds per webhook or SMS provider call."
    )
    parallel_destinations: int = Field(
        4, ge=1, le=64, description="Destinations served at once (one thread each) in a round."
    )
    keep_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="Sent and cancelled messages are deleted this many days after they settled.",
    )


class Settings(BaseSettings):
    """All of consentry's settings."""

    model_config = SettingsConfigDict(
        env_prefix="CONSENTRY_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = Field(
        "development", description="Placeholder secrets are refused outside development and test."
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (WAL) or postgresql+psycopg://user@host/db.",
    )
    secret_key: str = Field(PLACEHOLDER_SECRET, description="Signs links and derives token hashes.")
    default_phone_region: str = Field("US", description="Region for phone numbers without +.")
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL of links sent to customers (no slash)."
    )
    ingest: IngestSettings = IngestSettings()
    identity: IdentitySettings = IdentitySettings()
    dedupe: DedupeSettings = DedupeSettings()
    smtp: SmtpSettings = SmtpSettings()
    double_opt_in: DoubleOptInSettings = DoubleOptInSettings()
    crypto: CryptoSettings = CryptoSettings()
    erasure: ErasureSettings = ErasureSettings()
    retention: RetentionSettings = RetentionSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    quality: QualitySettings = QualitySettings()
    audiences: AudienceSettings = AudienceSettings()
    journeys: JourneySettings = JourneySettings()
    recommend: RecommendSettings = RecommendSettings()
    privacy: PrivacySettings = PrivacySettings()
    delivery: DeliverySettings = DeliverySettings()
    audience_exports: AudienceExportSettings = AudienceExportSettings()

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production" and self.secret_key == PLACEHOLDER_SECRET:
            raise ValueError(
                "CONSENTRY_SECRET_KEY is still the placeholder; set a random value in production"
            )
        if self.environment == "production" and not (
            self.crypto.master_keys.strip() and self.crypto.blind_index_key.strip()
        ):
            raise ValueError(
                "CONSENTRY_CRYPTO__MASTER_KEYS and CONSENTRY_CRYPTO__BLIND_INDEX_KEY must be set "
                "in production (consentry keys generate prints fresh ones)"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once."""
    return Settings()
