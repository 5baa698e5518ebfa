"""Probabilistic de-duplication of a workspace's profiles, and its review queue.

A **batch** run reads every unified profile (not merged away, none of its identifiers on the
suppression list; erased people have no rows left) ``batch_size`` at a time, opens the traits
that matter (those whose names have a slug of :data:`dedupe_records.TRAIT_SLUGS`, however the
workspace spells them) and the phone identifiers, turns them into comparison keys, trains a
Fellegi-Sunter model by EM on them (:func:`consentry.matching.dedupe`), scores the candidate
pairs and stores the trained parameters in ``dedupe_runs.model``. Then, pair by pair from the
most probable down:

- at or above ``auto_merge_threshold`` the two profiles merge through the reversible merge of
  deterministic resolution (``merging.MergePlan``: reason and actor name the run, so the
  profile's merge history shows it and ``unmerge`` undoes it); a merge the identifier caps
  refuse goes to review instead, with the reason (the checks of ``dedupe_review.merge_pair``,
  answered from memory for a chunk of pairs: :class:`_Merger`);
- from ``review_threshold`` up to it, the pair is queued (``match_candidates``, status
  ``pending``) with its probability and explanation (field names, levels and weights only);
- a pair a reviewer rejected, one an unmerge separated (its block), one already decided, or
  one already one profile is skipped: never proposed again.

An **incremental** run scores only the profiles created or changed since the last run (new
trait history rows, new profiles, merges and unmerges since) against all the others with the
last run's model and :class:`consentry.matching.MatchIndex`: no retraining (term frequencies
are counted on the current records).

Review: :func:`approve` merges the pair and records who and when; :func:`reject` records the
decision. Erasure deletes the person's candidate pairs with the rest of their identity rows
(``profiles.erasure``). Nothing here logs or stores a trait value.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from consentry.config import DedupeSettings
from consentry.errors import Conflict, FieldError, Invalid
from consentry.matching import MatchIndex, MatchSettings, RecordBatch, dedupe
from consentry.matching.model import LinkageModel, probability, weight_of
from consentry.platform.db import Database, lock_workspace, utcnow
from consentry.platform.vault import vault_of
from consentry.profiles import dedupe_records as dr
from consentry.profiles.bulk import canonical_map_many, current_traits_many
from consentry.profiles.dedupe_review import (  # the review queue: re-exported for callers
    APPROVED,
    MAX_PAGE,
    MERGED,
    PENDING,
    REJECTED,
    STATUSES,
    UNIFIED,
    Candidate,
    approve,
    list_candidates,
    reject,
    summaries,
)
from consentry.profiles.dedupe_tables import DedupeRunRow, MatchCandidateRow
from consentry.profiles.erasure import has_suppressions
from consentry.profiles.graph import identifier_counts_many
from consentry.profiles.merging import CapFn, MergePlan
from consentry.profiles.models import PHONE, merge_allowed, trait_slug
from consentry.profiles.tables import (
    IdentifierRow,
    MergeBlockRow,
    MergeRow,
    ProfileRow,
    SuppressionRow,
    TraitHistoryRow,
)

Mode = Literal["batch", "incremental"]
MODES: tuple[str, ...] = ("batch", "incremental")
MIN_PROFILES = 2
MIN_TRAINING_MATCHES = 5.0  # expected duplicates below which a retrained model is not used
WRITE_CHUNK = 500  # pairs applied per transaction
Progress = Callable[[str, int, int], None]  # (stage, done, total)


# --- reading the profiles ---------------------------------------------------------------------


def _suppressed_canonicals(session: Session, workspace_id: str) -> set[str]:
    """Unified profiles holding an identifier on the active suppression list."""
    if not has_suppressions(session=session, workspace_id=workspace_id):
        return set()
    i, s = IdentifierRow, SuppressionRow
    rows = session.execute(
        select(ProfileRow.canonical_id)
        .join(i, i.profile_id == ProfileRow.id)
        .join(
            s,
            (s.workspace_id == i.workspace_id) & (s.type == i.type) & (s.value == i.value),
        )
        .where(i.workspace_id == workspace_id, s.lifted_at.is_(None))
    )
    return {c for (c,) in rows}


def count_unified(*, session: Session, workspace_id: str) -> int:
    """How many unified profiles the workspace has (what a batch run reads)."""
    return int(
        session.scalar(
            select(func.count()).where(
                ProfileRow.workspace_id == workspace_id, ProfileRow.merged_into.is_(None)
            )
        )
        or 0
    )


# The workspace's distinct trait names, by a loose index scan of (workspace_id, key): one index
# seek per distinct name, however many profiles have it (SQLite and PostgreSQL alike).
_TRAIT_NAMES = text(
    """
    WITH RECURSIVE names(key) AS (
        SELECT min(key) FROM profile_traits WHERE workspace_id = :ws
        UNION ALL
        SELECT (SELECT min(t.key) FROM profile_traits t
                WHERE t.workspace_id = :ws AND t.key > names.key)
        FROM names WHERE names.key IS NOT NULL
    )
    SELECT key FROM names WHERE key IS NOT NULL
    """
)


def stored_trait_keys(*, session: Session, workspace_id: str) -> list[str]:
    """The stored names of the traits de-duplication reads (``dedupe_records.TRAIT_SLUGS``), as
    the workspace's profiles spell them: "given_name", "GivenName" and "given-name" alike."""
    names = session.connection().execute(_TRAIT_NAMES, {"ws": workspace_id}).scalars()
    return sorted(k for k in names if trait_slug(k) in dr.TRAIT_SLUGS)


def phone_identifiers_many(
    *, session: Session, workspace_id: str, canonical_ids: Sequence[str]
) -> dict[str, set[str]]:
    """The phone identifiers (E.164, as identity resolution normalised them) of each unified
    profile's members, opened: they spare the run parsing the phone trait again."""
    i, p = IdentifierRow, ProfileRow
    found: list[tuple[str, str | None]] = []
    for start in range(0, len(canonical_ids), 500):
        rows = session.connection().execute(
            select(p.canonical_id, i.sealed)
            .join_from(i, p, p.id == i.profile_id)
            .where(
                p.workspace_id == workspace_id,
                p.canonical_id.in_(canonical_ids[start : start + 500]),
                i.type == PHONE,
            )
        )
        found.extend((canonical, sealed) for canonical, sealed in rows)
    opened = vault_of(session).open_many(
        workspace_id, [(f"identifier:{PHONE}", sealed) for _, sealed in found]
    )
    out: dict[str, set[str]] = {}
    for (canonical, _), value in zip(found, opened, strict=True):
        if isinstance(value, str):
            out.setdefault(canonical, set()).add(value)
    return out


def read_keys(
    *,
    session: Session,
    workspace_id: str,
    batch_size: int,
    default_region: str,
    progress: Progress | None = None,
    seconds: dict[str, float] | None = None,
    readers: KeyReaders | None = None,
) -> dr.KeyColumns:
    """Every unified, unsuppressed profile's comparison keys, read ``batch_size`` at a time
    (ids in order, keyset paging: memory holds the keys, not the rows). ``seconds`` gathers
    the time spent reading and opening the traits (``read_traits``) and making the keys
    (``keys``). With ``readers`` and at least :data:`PARALLEL_FROM` profiles, ranges of ids
    are read by worker processes, each in a read transaction of its own (see
    :class:`KeyReaders`); the keys come back in the same order."""
    today = utcnow().date()
    total = count_unified(session=session, workspace_id=workspace_id)
    part = _KeyPart(
        workspace_id=workspace_id,
        names=stored_trait_keys(session=session, workspace_id=workspace_id),
        excluded=frozenset(_suppressed_canonicals(session, workspace_id)),
        batch_size=batch_size,
        today=today,
        default_region=default_region,
    )
    timer = {"read_traits": 0.0, "keys": 0.0} if seconds is None else seconds
    timer.setdefault("read_traits", 0.0)
    timer.setdefault("keys", 0.0)
    if readers is not None and readers.workers > 1 and total >= PARALLEL_FROM:
        bounds = _range_bounds(session, workspace_id, max(batch_size, total // _RANGES))
        return readers.read(part, bounds, total, progress, timer)
    done = 0

    def read(ids: int) -> None:
        nonlocal done
        done += ids
        if progress:
            progress("read", done, max(total, done))

    return part.read(session, after="", upto=None, timer=timer, on_batch=read)


PARALLEL_FROM = 50_000  # unified profiles from which worker processes read (when given)
_RANGES = 40  # id ranges a parallel read is cut into (progress moves range by range)


@dataclass(frozen=True, slots=True)
class _KeyPart:
    """What reading a range of unified profiles' keys needs (picklable, for a worker)."""

    workspace_id: str
    names: list[str]  # the stored spellings of the traits de-duplication reads
    excluded: frozenset[str]  # unified profiles with a suppressed identifier
    batch_size: int
    today: date
    default_region: str

    def read(
        self,
        session: Session,
        *,
        after: str,
        upto: str | None,
        timer: dict[str, float],
        on_batch: Callable[[int], None] | None = None,
    ) -> dr.KeyColumns:
        """The keys of the unified profiles with ids in ``(after, upto]`` (``upto`` None: to
        the end), in id order."""
        out = dr.KeyColumns()
        while True:
            query = select(ProfileRow.id).where(
                ProfileRow.workspace_id == self.workspace_id,
                ProfileRow.merged_into.is_(None),
                ProfileRow.id > after,
            )
            if upto is not None:
                query = query.where(ProfileRow.id <= upto)
            ids = list(session.scalars(query.order_by(ProfileRow.id).limit(self.batch_size)))
            if not ids:
                return out
            after = ids[-1]
            clock = time.perf_counter()
            traits = (
                current_traits_many(
                    session=session,
                    workspace_id=self.workspace_id,
                    canonical_ids=ids,
                    keys=self.names,
                )
                if self.names
                else {}
            )
            phones = phone_identifiers_many(
                session=session, workspace_id=self.workspace_id, canonical_ids=ids
            )
            timer["read_traits"] += time.perf_counter() - clock
            clock = time.perf_counter()
            no_phones: set[str] = set()
            for pid in ids:
                if pid not in self.excluded:
                    out.add(
                        pid,
                        dr.comparison_keys(
                            traits.get(pid, {}),
                            today=self.today,
                            default_region=self.default_region,
                            phones=phones.get(pid, no_phones),
                        ),
                    )
            timer["keys"] += time.perf_counter() - clock
            if on_batch is not None:
                on_batch(len(ids))


def _range_bounds(session: Session, workspace_id: str, size: int) -> list[tuple[str, str | None]]:
    """The workspace's unified profile ids cut into ranges ``(after, upto]`` of about ``size``
    (the last open-ended), from one pass over the ids (an index scan, no row read)."""
    ids = session.connection().execute(
        select(ProfileRow.id)
        .where(ProfileRow.workspace_id == workspace_id, ProfileRow.merged_into.is_(None))
        .order_by(ProfileRow.id)
    )
    cuts = [pid for n, (pid,) in enumerate(ids, start=1) if n % size == 0]
    starts = ["", *cuts]
    return [(after, upto) for after, upto in zip(starts, [*cuts, None], strict=True)]


OpenStore = Callable[[], Database]  # opens the store again (picklable: run in a worker)

_worker_store: Database | None = None  # a reader process's own store


def _open_worker(open_store: OpenStore) -> None:
    global _worker_store
    _worker_store = open_store()


def _read_range(
    part: _KeyPart, after: str, upto: str | None
) -> tuple[int, list[str], dict[str, list[str | None]], dict[str, float]]:
    """In a reader process: how many profiles the range holds, and the keys of those not
    suppressed (ids and columns), with the time spent."""
    assert _worker_store is not None  # set by the pool's initializer
    timer = {"read_traits": 0.0, "keys": 0.0}
    read = [0]
    with _worker_store.read() as session:
        keys = part.read(
            session, after=after, upto=upto, timer=timer, on_batch=lambda n: read.append(n)
        )
    return sum(read), keys.ids, keys.columns, timer


@dataclass(frozen=True, slots=True)
class KeyReaders:
    """Worker processes for reading a large workspace's keys: each opens the store again
    (``open_store``) and reads whole id ranges (traits read, opened and keyed where they are
    read: the work that dominates a batch run). ``workers``: processes, at most one per core
    is useful. Each range is read in its own transaction, so a profile merged meanwhile may
    be read on both sides of the merge; the write stage checks every pair against the store
    again before acting on it."""

    open_store: OpenStore
    workers: int

    def read(
        self,
        part: _KeyPart,
        bounds: list[tuple[str, str | None]],
        total: int,
        progress: Progress | None,
        timer: dict[str, float],
    ) -> dr.KeyColumns:
        out = dr.KeyColumns()
        done = 0
        context = multiprocessing.get_context("spawn")  # no inherited connections or locks
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(bounds)),
            mp_context=context,
            initializer=_open_worker,
            initargs=(self.open_store,),
        ) as pool:
            futures = [pool.submit(_read_range, part, after, upto) for after, upto in bounds]
            for future in futures:  # in id order
                read, ids, columns, spent = future.result()
                out.ids.extend(ids)
                for name, column in columns.items():
                    out.columns[name].extend(column)
                for name, value in spent.items():
                    timer[name] += value
                done += read
                if progress:
                    progress("read", done, max(total, done))
        return out


def _history_mark(session: Session, workspace_id: str) -> int:
    found = session.scalar(
        select(func.max(TraitHistoryRow.id)).where(TraitHistoryRow.workspace_id == workspace_id)
    )
    return int(found or 0)


def changed_since(
    *, session: Session, workspace_id: str, since: datetime, history_mark: int, run_id: str
) -> set[str]:
    """Unified profiles created or changed since run ``run_id``: a profile created (wall clock)
    since ``since``, a trait recorded after history row ``history_mark``, a merge or unmerge
    since (but the run's own merges: it scored both sides)."""
    canonical = ProfileRow.canonical_id
    found = set(
        session.scalars(
            select(canonical).where(
                ProfileRow.workspace_id == workspace_id, ProfileRow.created_at >= since
            )
        )
    )
    found.update(
        session.scalars(
            select(canonical)
            .join(TraitHistoryRow, TraitHistoryRow.profile_id == ProfileRow.id)
            .where(TraitHistoryRow.workspace_id == workspace_id, TraitHistoryRow.id > history_mark)
            .distinct()
        )
    )
    touched: set[str] = set()
    for winner, loser in session.execute(
        select(MergeRow.winner_id, MergeRow.loser_id).where(
            MergeRow.workspace_id == workspace_id,
            or_(
                (MergeRow.created_at >= since) & (MergeRow.actor != f"dedupe:{run_id}"),
                MergeRow.undone_at >= since,
            ),
        )
    ):
        touched.update((winner, loser))
    if touched:
        found.update(
            canonical_map_many(
                session=session, workspace_id=workspace_id, profile_ids=touched
            ).values()
        )
    return found


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """Two unified profiles that may be one person, as the model scored them."""

    first: str
    second: str
    weight: float
    probability: float
    merge: bool  # at or above the auto-merge threshold
    explanation: dict[str, Any] = field(repr=False)


@dataclass(slots=True)
class RunReport:
    """What a run did (counts and timings; no values)."""

    id: str
    workspace_id: str
    mode: str
    dry_run: bool
    started_at: datetime
    auto_merge_threshold: float
    review_threshold: float
    finished_at: datetime | None = None
    profiles: int = 0  # unified profiles read
    scored: int = 0  # profiles scored against the rest (all in a batch run)
    candidate_pairs: int = 0  # pairs compared
    kept_pairs: int = 0  # pairs at or above the review threshold
    auto_merged: int = 0
    queued: int = 0
    refreshed: int = 0  # pending pairs scored again
    refused: int = 0  # auto-merges the identifier caps refused (queued instead)
    skipped: dict[str, int] = field(default_factory=dict)
    history_mark: int = 0
    since: datetime | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    matching: dict[str, Any] = field(default_factory=dict)
    reading: dict[str, float] = field(default_factory=dict)  # the read stage's parts

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def document(self) -> dict[str, Any]:
        """The report as JSON (also what ``dedupe_runs.report`` holds, less the model)."""
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "since": self.since.isoformat() if self.since else None,
            "auto_merge_threshold": self.auto_merge_threshold,
            "review_threshold": self.review_threshold,
            "profiles": self.profiles,
            "scored": self.scored,
            "candidate_pairs": self.candidate_pairs,
            "kept_pairs": self.kept_pairs,
            "auto_merged": self.auto_merged,
            "queued": self.queued,
            "refreshed": self.refreshed,
            "refused": self.refused,
            "skipped": dict(sorted(self.skipped.items())),
            "history_mark": self.history_mark,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "reading": {k: round(v, 3) for k, v in self.reading.items()},
            "matching": self.matching,
        }


def run(
    db: Database,
    workspace_id: str,
    settings: DedupeSettings,
    *,
    cap: CapFn,
    default_region: str,
    mode: str = "batch",
    dry_run: bool = False,
    auto_merge_threshold: float | None = None,
    progress: Progress | None = None,
    open_store: OpenStore | None = None,
) -> RunReport:
    """Run a batch or incremental de-duplication of the workspace (see the module's text).

    A dry run scores and decides but writes nothing (no merge, no queue, no run row).
    ``open_store`` opens the same store again: given, a large workspace's keys are read by
    ``settings.reader_processes()`` worker processes (see :func:`read_keys`).
    """
    if mode not in MODES:
        raise Invalid("unknown mode", [FieldError("mode", "batch or incremental")])
    merge_at = (
        settings.auto_merge_threshold if auto_merge_threshold is None else auto_merge_threshold
    )
    if not 0 < settings.review_threshold <= merge_at < 1:
        raise Invalid(
            "the auto-merge threshold must lie between the review threshold and 1",
            [FieldError("threshold", f"between {settings.review_threshold} and 1, exclusive")],
        )
    match_settings = MatchSettings(
        merge_threshold=merge_at, review_threshold=settings.review_threshold
    )
    report = RunReport(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        mode=mode,
        dry_run=dry_run,
        started_at=utcnow(),
        auto_merge_threshold=merge_at,
        review_threshold=settings.review_threshold,
    )
    clock = time.perf_counter()
    # the latest run: its id, start, trait history mark and model
    previous: tuple[str, datetime, int, dict[str, Any]] | None = None
    with db.read() as session:
        last = _latest_row(session, workspace_id)
        if last is not None:
            mark = int(last.report.get("history_mark", 0))
            previous = (last.id, last.started_at, mark, last.model)
        elif mode == "incremental":
            raise Conflict("no dedupe run yet: run a batch dedupe first (it trains the model)")
        report.history_mark = _history_mark(session, workspace_id)
        keys = read_keys(
            session=session,
            workspace_id=workspace_id,
            batch_size=settings.batch_size,
            default_region=default_region,
            progress=progress,
            seconds=report.reading,
            readers=(
                None if open_store is None else KeyReaders(open_store, settings.reader_processes())
            ),
        )
        changed: set[str] | None = None
        if previous is not None and mode == "incremental":
            report.since = previous[1]
            changed = changed_since(
                session=session,
                workspace_id=workspace_id,
                since=previous[1],
                history_mark=previous[2],
                run_id=previous[0],
            )
    report.profiles = len(keys)
    report.seconds["read"] = time.perf_counter() - clock
    clock = time.perf_counter()
    if mode == "batch":
        pairs, model = _batch_pairs(
            keys, match_settings, report, previous[3] if previous is not None else None
        )
        report.model = dr.model_document(model)
    else:
        assert changed is not None and previous is not None
        report.model = dict(previous[3])
        pairs = _incremental_pairs(keys, changed, previous[3], match_settings, report)
    pairs = _with_evidence(pairs, report)
    report.kept_pairs = len(pairs)
    report.seconds["match"] = time.perf_counter() - clock
    if progress:
        progress("match", 1, 1)
    clock = time.perf_counter()
    if dry_run:
        with db.read() as session:
            _decide(session, workspace_id, pairs, report, cap=cap, apply=False, progress=progress)
    else:
        for start in range(0, len(pairs), WRITE_CHUNK):
            with db.write() as session:
                lock_workspace(session, workspace_id)
                _decide(
                    session,
                    workspace_id,
                    pairs[start : start + WRITE_CHUNK],
                    report,
                    cap=cap,
                    apply=True,
                    progress=progress,
                    done=start,
                    total=len(pairs),
                )
    report.seconds["write"] = time.perf_counter() - clock
    report.finished_at = utcnow()
    if not dry_run:
        with db.write() as session:
            session.add(
                DedupeRunRow(
                    id=report.id,
                    workspace_id=workspace_id,
                    mode=mode,
                    started_at=report.started_at,
                    finished_at=report.finished_at,
                    profiles=report.profiles,
                    pairs=report.candidate_pairs,
                    auto_merged=report.auto_merged,
                    queued=report.queued,
                    model=report.model,
                    report=report.document(),
                )
            )
    return report


def _check_trainable(batch: RecordBatch) -> None:
    if len(batch) < MIN_PROFILES:
        raise Conflict(f"too few profiles to compare (at least {MIN_PROFILES} are needed)")
    if not any(batch.has(f) for f in dr.FIELDS):
        raise Conflict("no profile has a name, email, phone, birthday or address to compare")


def _batch_pairs(
    keys: dr.KeyColumns,
    settings: MatchSettings,
    report: RunReport,
    previous: dict[str, Any] | None,
) -> tuple[list[ScoredPair], LinkageModel]:
    batch = keys.batch()
    _check_trainable(batch)
    result = dedupe(batch, settings)
    training = result.model.training
    report.matching["model"] = "trained"
    if (
        previous is not None
        and training is not None
        and training.expected_matches < MIN_TRAINING_MATCHES
    ):
        # EM learns what a duplicate looks like from the duplicates; once the earlier runs
        # merged them, too few are left and the model would call nothing a match: score with
        # the model the earlier run trained instead
        result = dedupe(batch, settings, model=dr.model_from_document(previous, batch))
        report.matching["model"] = "previous (too few duplicates left to train on)"
    report.scored = len(batch)
    report.candidate_pairs = result.stats.candidate_pairs
    report.matching["skipped_blocks"] = result.stats.skipped_blocks
    report.matching["seconds"] = {k: round(v, 3) for k, v in result.stats.seconds.items()}
    scorer = result.model.scorer(result.model.comparer(batch))
    explained = dr.explanations(scorer, result.left, result.right)
    merge = result.merge
    probabilities = result.probability
    ids = batch.ids
    pairs = [
        ScoredPair(
            first=str(ids[a]),
            second=str(ids[b]),
            weight=float(result.weight[k]),
            probability=float(probabilities[k]),
            merge=bool(merge[k]),
            explanation=explained[k],
        )
        for k, (a, b) in enumerate(zip(result.left.tolist(), result.right.tolist(), strict=True))
    ]
    pairs.sort(key=lambda p: -p.weight)
    return pairs, result.model


def _incremental_pairs(
    keys: dr.KeyColumns,
    changed: set[str],
    document: dict[str, Any],
    settings: MatchSettings,
    report: RunReport,
) -> list[ScoredPair]:
    new = [i for i, pid in enumerate(keys.ids) if pid in changed]
    report.scored = len(new)
    if not new:
        return []
    everyone = keys.batch()
    model = dr.model_from_document(document, everyone)
    new_set = set(new)
    old = [i for i in range(len(keys)) if i not in new_set]
    new_batch = keys.batch(new)
    found: list[tuple[str, str, float]] = []
    if old:
        index = MatchIndex(model, keys.batch(old), settings)
        matches = index.match(new_batch)
        found = [(str(m.new_id), str(m.other_id), m.weight) for m in matches]
    elif len(new_batch) >= MIN_PROFILES:
        result = dedupe(new_batch, settings, model=model)
        found = [
            (str(a), str(b), float(w))
            for (a, b), w in zip(result.pairs(), result.weight.tolist(), strict=True)
        ]
    report.candidate_pairs = len(found)
    if not found:
        return []
    # explain every pair on one small batch of the profiles involved
    position = {pid: i for i, pid in enumerate(keys.ids)}
    involved = sorted({position[p] for a, b, _ in found for p in (a, b)})
    mini = keys.batch(involved)
    at = {pid: i for i, pid in enumerate(mini.ids.tolist())}
    left = np.array([at[a] for a, _, _ in found], dtype=np.int32)
    right = np.array([at[b] for _, b, _ in found], dtype=np.int32)
    scorer = model.scorer(model.comparer(mini))
    explained = dr.explanations(scorer, left, right)
    merge_weight = weight_of(settings.merge_threshold)
    pairs = [
        ScoredPair(
            first=a,
            second=b,
            weight=w,
            probability=float(probability(np.array([w]))[0]),
            merge=w >= merge_weight,
            explanation=explained[k],
        )
        for k, (a, b, w) in enumerate(found)
    ]
    pairs.sort(key=lambda p: -p.weight)
    return pairs


def _with_evidence(pairs: list[ScoredPair], report: RunReport) -> list[ScoredPair]:
    """The pairs worth a decision: a pair that agrees on nothing personal (only a place) is
    dropped; one that does not name the person (``dedupe_records.names_the_person``) goes to
    review even above the auto-merge threshold."""
    kept = []
    for pair in pairs:
        if not dr.mentions_the_person(pair.explanation):
            report.skip("no personal evidence")
        elif pair.merge and not dr.names_the_person(pair.explanation):
            report.skip("merge held for review: too little personal evidence")
            kept.append(replace(pair, merge=False))
        else:
            kept.append(pair)
    return kept


# --- deciding each pair -----------------------------------------------------------------------


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


@dataclass(slots=True)
class _Known:
    """What the store already says about pairs, by the unified profiles they are now."""

    rows: dict[tuple[str, str], MatchCandidateRow]
    blocked: set[tuple[str, str]]
    joined: list[MatchCandidateRow]  # pending pairs whose two sides are one profile now


def _known(session: Session, workspace_id: str, canonical_ids: Iterable[str]) -> _Known:
    """Candidate rows and unmerge blocks touching the given unified profiles."""
    wanted = sorted(set(canonical_ids))
    members: dict[str, str] = {}  # member id -> its unified profile
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        rows_of_part = session.execute(
            select(ProfileRow.id, ProfileRow.canonical_id).where(
                ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id.in_(part)
            )
        )
        members.update((pid, canonical) for pid, canonical in rows_of_part)
    ids = sorted(members)
    rows: dict[tuple[str, str], MatchCandidateRow] = {}
    blocked: set[tuple[str, str]] = set()
    joined: list[MatchCandidateRow] = []
    rank = {REJECTED: 0, APPROVED: 1, MERGED: 1, PENDING: 2, UNIFIED: 3}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for row in session.scalars(
            select(MatchCandidateRow).where(
                MatchCandidateRow.workspace_id == workspace_id,
                or_(MatchCandidateRow.profile_a.in_(part), MatchCandidateRow.profile_b.in_(part)),
            )
        ):
            a, b = members.get(row.profile_a), members.get(row.profile_b)
            if a is None or b is None:
                continue
            if a == b:
                if row.status == PENDING:
                    joined.append(row)
                continue
            key = _ordered(a, b)
            held = rows.get(key)
            if held is None or rank[row.status] < rank[held.status]:
                rows[key] = row
        for first, second in session.execute(
            select(MergeBlockRow.profile_a, MergeBlockRow.profile_b).where(
                MergeBlockRow.workspace_id == workspace_id,
                or_(MergeBlockRow.profile_a.in_(part), MergeBlockRow.profile_b.in_(part)),
            )
        ):
            a, b = members.get(first), members.get(second)
            if a is not None and b is not None and a != b:
                blocked.add(_ordered(a, b))
    return _Known(rows, blocked, joined)


@dataclass(slots=True)
class _Merger:
    """The run's merges within one transaction, planned one by one in memory and written
    together (``merging.MergePlan``: the reversible merge of deterministic resolution), with
    what ``dedupe_review.merge_pair`` asks the store before each merge kept in memory instead:
    the unified profile of each id of the chunk (``canon``, followed through the plan by
    :meth:`unified`), the unmerge blocks between them (``blocked``) and their identifier counts
    (for the caps), each brought up to date after every merge. ``_decide`` skips a pair that
    is one profile or blocked by the same ``canon`` and ``blocked``; the caps are checked
    here. The same decisions as ``merge_pair``, without five queries a merge."""

    canon: dict[str, str]
    blocked: set[tuple[str, str]]
    counts: dict[str, Counter[str]]
    plan: MergePlan | None  # None: nothing is written (a dry run)

    def unified(self, profile_id: str) -> str | None:
        """The unified profile ``profile_id`` belongs to now, merges of this chunk included."""
        found = self.canon.get(profile_id)
        return found if found is None or self.plan is None else self.plan.root_of(found)

    def merge(
        self, a: str, b: str, *, reason: str, actor: str, cap: CapFn
    ) -> tuple[str, str | None]:
        """Merge the unified profiles ``a`` and ``b`` (two, not blocked): ``("merged", merge
        id)``, or ``("refused", reason)`` when the union would break an identifier cap."""
        assert self.plan is not None
        empty: Counter[str] = Counter()
        refused = merge_allowed(self.counts.get(a, empty), self.counts.get(b, empty), cap)
        if refused is not None:
            return "refused", refused
        record = self.plan.merge(a, b, reason=reason, actor=actor)
        winner, loser = record.winner_id, record.loser_id
        self.counts[winner] = self.counts.pop(a, Counter()) + self.counts.pop(b, Counter())
        moved = [pair for pair in self.blocked if loser in pair]
        for pair in moved:
            self.blocked.discard(pair)
            x, y = (winner if side == loser else side for side in pair)
            self.blocked.add(_ordered(x, y))
        return MERGED, record.id


def _decide(
    session: Session,
    workspace_id: str,
    pairs: Sequence[ScoredPair],
    report: RunReport,
    *,
    cap: CapFn,
    apply: bool,
    progress: Progress | None,
    done: int = 0,
    total: int = 0,
) -> None:
    if not pairs:
        return
    involved = {p for pair in pairs for p in (pair.first, pair.second)}
    canon = canonical_map_many(session=session, workspace_id=workspace_id, profile_ids=involved)
    known = _known(session, workspace_id, canon.values())
    merger = _Merger(
        canon,
        known.blocked,
        identifier_counts_many(session, workspace_id, canon.values()) if apply else {},
        MergePlan(session, workspace_id, canon.values()) if apply else None,
    )
    actor = f"dedupe:{report.id}"
    now = utcnow()
    if apply:
        for done_row in known.joined:  # merged some other way: nothing left to decide
            done_row.status, done_row.decided_at, done_row.decided_by = UNIFIED, now, actor
    for pair in pairs:
        a, b = merger.unified(pair.first), merger.unified(pair.second)
        if a is None or b is None:
            report.skip("gone")  # erased meanwhile
            continue
        if a == b:
            report.skip("unified")
            continue
        key = _ordered(a, b)
        if key in known.blocked:
            report.skip("unmerged")
            continue
        row = known.rows.get(key)
        if row is not None and row.run_id == report.id:
            report.skip("repeated")  # two pairs of this run are now the same two profiles
            continue
        if row is not None and row.status == REJECTED:
            report.skip("rejected")
            continue
        if row is not None and row.status != PENDING:
            report.skip("decided")
            continue
        outcome, detail = MERGED, None
        if pair.merge:
            if apply:
                outcome, detail = merger.merge(
                    a,
                    b,
                    reason=f"probabilistic match p={pair.probability:.4f} (dedupe run {report.id})",
                    actor=actor,
                    cap=cap,
                )
        if not apply:
            if pair.merge:
                report.auto_merged += 1
            elif row is not None:
                report.refreshed += 1
            else:
                report.queued += 1
            continue
        status = MERGED if pair.merge and outcome == MERGED else PENDING
        note = None
        if status == MERGED:
            report.auto_merged += 1
            note = f"merge:{detail}"
        elif outcome == "refused":
            report.refused += 1
            note = f"auto-merge refused: {detail}"[:500]
        if row is None:
            if status == PENDING:
                report.queued += 1
            first, second = key
            row = MatchCandidateRow(
                id=str(uuid.uuid4()),
                workspace_id=workspace_id,
                profile_a=first,
                profile_b=second,
                found_at=now,
            )
            session.add(row)
            known.rows[key] = row
        elif status == PENDING:
            report.refreshed += 1
        row.probability = pair.probability
        row.match_weight = pair.weight
        row.explanation = pair.explanation
        row.status = status
        row.run_id = report.id
        row.note = note
        if status == MERGED:
            row.decided_at, row.decided_by = now, actor
    if merger.plan is not None:
        merger.plan.apply()
    session.flush()
    if progress and apply:
        progress("write", done + len(pairs), max(total, done + len(pairs)))


# --- runs -------------------------------------------------------------------------------------


def _latest_row(session: Session, workspace_id: str) -> DedupeRunRow | None:
    return session.scalars(
        select(DedupeRunRow)
        .where(DedupeRunRow.workspace_id == workspace_id)
        .order_by(DedupeRunRow.started_at.desc(), DedupeRunRow.id)
        .limit(1)
    ).first()


def latest_run(*, session: Session, workspace_id: str) -> dict[str, Any] | None:
    """The latest run's report and model parameters, or None before the first run."""
    row = _latest_row(session, workspace_id)
    if row is None:
        return None
    return {**row.report, "model": row.model}


def has_run(*, session: Session, workspace_id: str) -> bool:
    """Whether the workspace has had a run (an incremental run needs one's model)."""
    return _latest_row(session, workspace_id) is not None


__all__ = [
    "APPROVED",
    "MAX_PAGE",
    "MERGED",
    "PENDING",
    "REJECTED",
    "STATUSES",
    "UNIFIED",
    "Candidate",
    "RunReport",
    "approve",
    "has_run",
    "latest_run",
    "list_candidates",
    "reject",
    "run",
    "summaries",
]
