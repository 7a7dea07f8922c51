"""``import_crm``: a customers file (and optionally a holdings file) becomes a new live version.

1. Both uploads are hashed and encoding-checked (``source``); the same content with the same
   options as the live version is a no-op.
2. The customers file streams block by block through validation into the staging folder's
   ``customers.parquet``; ids are hashed on the way and never written raw.
3. The holdings file streams into ``holdings.parquet``, each row checked against the customers
   just imported.
4. If the share of rejected rows is acceptable, serving profiles are loaded from those Parquet
   files into a fresh Redis namespace (the same loader a rollback uses), the folder is renamed
   into place and the live pointer flips; the previous namespace is dropped, its files kept.

Anything that stops an import before the flip leaves the previous version live and removes what
was half-written (staging folder, spooled uploads, the new namespace).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import time
from dataclasses import asdict, dataclass, field

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from enrichment.crm import serving
from enrichment.crm.coltypes import ColumnType, infer_type, parse_type_spec
from enrichment.crm.derive import Derived, check_columns, parse_derive_options
from enrichment.crm.errors import CrmError, CrmImportError
from enrichment.crm.holdings import check_layout as check_holdings_layout
from enrichment.crm.holdings import import_holdings
from enrichment.crm.live import cleanup_orphans, erased_hashes, load_serving
from enrichment.crm.reader import BatchReader, Layout, NeedExactRows, delimiter_name, layout_of
from enrichment.crm.source import DEFAULT_MAX_BYTES, Input, Source, prepare_source
from enrichment.crm.validate import (
    WRONG_FIELDS,
    CustomerPlan,
    CustomerValidator,
    ErrorLog,
    make_hasher,
)
from enrichment.crm.versions import (
    CUSTOMERS,
    DEFAULT_KEEP,
    HOLDINGS,
    MANIFEST,
    TenantLock,
    get_version,
    manifest_bytes,
    next_number,
    parquet_writer,
    prune,
    publish,
    spool_dir,
    stage,
    tenant_lock,
)
from enrichment.crm.workers import Serial
from store.artifacts import Staged, artifacts_for
from store.config import Settings
from store.tenants import Tenant, get_tenant

FORMAT_VERSION = 1  # bump when the same input would import differently
ZIP_CANDIDATES = ("zip", "zipcode", "zip_code", "postal_code", "postcode", "zip5")
RESERVED = ("customer_hash", "zip")
SAMPLE_ROWS = 20_000


@dataclass
class ImportOptions:
    id_column: str = "customer_id"
    zip_column: str | None = None  # None: the first of ZIP_CANDIDATES present, if any
    country: str = "US"  # how ZIP codes are normalised
    types: dict[str, str] = field(default_factory=dict)  # column -> type spec, overrides inference
    derive: list[str] = field(default_factory=list)  # "name=expression"
    delimiter: str | None = None  # None: sniffed
    encoding: str | None = None  # None: detected
    holdings_id_column: str | None = None  # None: same as id_column
    max_reject_rate: float = 0.1  # above this share of rejected rows the file is refused
    keep_versions: int = DEFAULT_KEEP
    lock_wait: float = 0.0
    max_bytes: int = DEFAULT_MAX_BYTES

    def fingerprint(self) -> dict:
        """The options that change what an import produces (part of the content hash)."""
        keep = (
            "id_column",
            "zip_column",
            "country",
            "types",
            "derive",
            "delimiter",
            "encoding",
            "holdings_id_column",
        )
        data = {k: v for k, v in asdict(self).items() if k in keep}
        data["types"] = dict(sorted(self.types.items()))
        return {"format": FORMAT_VERSION, **data}


def import_crm(
    r: redis.Redis,
    tenant: str,
    customers: Input,
    holdings: Input | None = None,
    *,
    settings: Settings,
    options: ImportOptions | None = None,
    customers_name: str | None = None,
    holdings_name: str | None = None,
) -> dict:
    """Import a CRM extract for ``tenant`` and return the report.

    ``customers``/``holdings``: a path, bytes or a binary file-like (an upload stream), CSV or
    Parquet (told apart by content). Raises ``CrmImportError`` (its ``.report`` has the same keys,
    status "rejected") when the file cannot be imported, and ``CrmError`` for an unknown tenant
    or when another import holds the tenant's lock. The report: status (imported | unchanged),
    version, live_version, previous_version, rows_read/imported/rejected, errors (first 100:
    row, column, reason[, value | detail]), error_counts, columns (name, type, source),
    holdings (the same counts for the holdings file), warnings, seconds.
    """
    options = options or ImportOptions()
    t = get_tenant(r, tenant)
    if t is None:
        raise CrmError(f"no tenant named {tenant!r}")
    if not 0 <= options.max_reject_rate <= 1:
        raise CrmError("max_reject_rate must be between 0 and 1")
    job = _Import(r, settings, t, options)
    with tenant_lock(r, tenant, options.lock_wait) as lock:
        job.lock = lock
        cleanup_orphans(r, settings, tenant)
        try:
            return job.run(customers, holdings, customers_name, holdings_name)
        finally:
            job.cleanup()


class _Import:
    def __init__(
        self, r: redis.Redis, settings: Settings, tenant: Tenant, options: ImportOptions
    ) -> None:
        self.r = r
        self.settings = settings
        self.tenant = tenant
        self.options = options
        self.lock: TenantLock | None = None
        self.started = time.monotonic()
        self.sources: list[Source] = []
        self.staging: Staged | None = None
        self.sid: str | None = None
        self.parquet: pq.ParquetWriter | None = None
        self.published = False
        self.report: dict = {
            "tenant": tenant.name,
            "status": None,
            "version": None,
            "live_version": serving.current_version(r, tenant.name),
            "previous_version": None,
            "source": None,
            "id_column": options.id_column,
            "zip_column": None,
            "delimiter": None,
            "rows_read": 0,
            "rows_imported": 0,
            "rows_rejected": 0,
            "rows_skipped_erased": 0,
            "rows_blank": 0,
            "errors": [],
            "error_counts": {},
            "columns": [],
            "holdings": None,
            "warnings": [],
        }
        self.derived: list[Derived] = []
        self.declared: dict[str, ColumnType] = {}
        self.plan: CustomerPlan | None = None

    # -- outcome helpers ------------------------------------------------------------------
    def _reject(self, problem: str) -> CrmImportError:
        self.report["status"] = "rejected"
        live = self.report["live_version"]
        self.report["problem"] = problem
        self.report["message"] = f"{problem}; nothing was imported" + (
            f" and {live} is still live" if live else ""
        )
        self.report["seconds"] = round(time.monotonic() - self.started, 3)
        return CrmImportError(self.report["message"], self.report)

    def cleanup(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if not self.published:
            if self.sid is not None:
                serving.drop_namespace(self.r, self.tenant.name, self.sid)
            if self.staging is not None:
                artifacts_for(self.settings).discard(self.staging)
        for s in self.sources:
            s.cleanup()

    # -- the import -----------------------------------------------------------------------
    def run(
        self,
        customers: Input,
        holdings: Input | None,
        customers_name: str | None,
        holdings_name: str | None,
    ) -> dict:
        o, report, name = self.options, self.report, self.tenant.name
        try:
            self.derived = parse_derive_options(o.derive)
            self.declared = {col: parse_type_spec(spec, col) for col, spec in o.types.items()}
            spool = spool_dir(self.settings, name)
            src = prepare_source(
                customers,
                spool_dir=spool,
                label="customers file",
                name=customers_name,
                encoding=o.encoding,
                max_bytes=o.max_bytes,
            )
            self.sources.append(src)
            report["source"] = src.describe()
            report["warnings"] += src.warnings
            hsrc = None
            if holdings is not None:
                hsrc = prepare_source(
                    holdings,
                    spool_dir=spool,
                    label="holdings file",
                    name=holdings_name,
                    encoding=o.encoding,
                    max_bytes=o.max_bytes,
                )
                self.sources.append(hsrc)
                report["warnings"] += hsrc.warnings
        except CrmError as err:
            raise self._reject(str(err)) from err
        content_hash = self._content_hash(src, hsrc)
        report["content_hash"] = content_hash
        unchanged = self._unchanged(content_hash)
        if unchanged is not None:
            return unchanged
        try:
            return self._import(src, hsrc, content_hash)
        except CrmImportError:
            raise
        except CrmError as err:
            raise self._reject(str(err)) from err

    def _content_hash(self, src: Source, hsrc: Source | None) -> str:
        h = hashlib.sha256(orjson.dumps(self.options.fingerprint(), option=orjson.OPT_SORT_KEYS))
        h.update(src.sha256.encode())
        h.update(hsrc.sha256.encode() if hsrc else b"-")
        return h.hexdigest()

    def _unchanged(self, content_hash: str) -> dict | None:
        live = self.report["live_version"]
        if live is None:
            return None
        try:
            manifest = get_version(self.settings, self.tenant.name, live).manifest()
        except CrmError:
            return None
        if manifest.get("content_hash") != content_hash:
            return None
        report = dict(manifest)
        for k in ("attributes", "types", "created_at", "erased_rows"):
            report.pop(k, None)
        report.update(
            status="unchanged",
            version=live,
            live_version=live,
            message=f"same content as the live version {live}; nothing to do",
            seconds=round(time.monotonic() - self.started, 3),
        )
        return report

    def _import(self, src: Source, hsrc: Source | None, content_hash: str) -> dict:
        o, report, name = self.options, self.report, self.tenant.name
        layout = layout_of(src, o.delimiter, o.id_column)
        report["warnings"] += layout.warnings
        report["delimiter"] = layout.delimiter
        if layout.delimiter and layout.delimiter != ",":
            report["warnings"].append(
                f"customers file is {delimiter_name(layout.delimiter)}-separated"
            )
        id_column = self._id_column(layout, src)
        zip_column = self._zip_column(layout)
        report.update(id_column=id_column, zip_column=zip_column)
        hlayout = None
        if hsrc is not None:  # whole-file problems of either file before any work
            hlayout = layout_of(hsrc, o.delimiter, o.holdings_id_column or id_column)
            check_holdings_layout(hsrc, hlayout, o.holdings_id_column or id_column)
        erased = erased_hashes(self.r, name)
        hasher = make_hasher(self.tenant)
        number = next_number(self.settings, name)
        version = f"v{number}"
        self.staging = stage(self.settings, name, number)
        validator = self._customers(src, layout, id_column, zip_column, hasher, erased)
        if hsrc is not None and hlayout is not None:
            held = import_holdings(
                hsrc, hlayout, o.holdings_id_column or id_column, hasher, erased,
                validator.seen, validator.known, self.staging.path / HOLDINGS, self._renew,
            )  # fmt: skip
            report["holdings"] = held.report()
            self._check_share(held.rows_rejected, held.rows_read, "holdings file", held.log)
        elif report["live_version"]:
            report["warnings"].append("no holdings file: this version has no holdings")
        del validator  # the id map can be large; serving does not need it
        pa.default_memory_pool().release_unused()
        assert self.plan is not None
        plan_info = {"attributes": self.plan.attribute_names, "types": self.plan.attribute_types()}
        loaded = load_serving(self.r, name, self.staging.path, version, plan_info, self.lock)
        self.sid = loaded.sid
        if report["holdings"] is not None:
            report["holdings"]["customers_with_holdings"] = loaded.customers_with_holdings
        # Inside the staging folder a plain write will do: publish makes every file durable.
        (self.staging.path / MANIFEST).write_bytes(manifest_bytes(self._manifest(content_hash)))
        publish(self.settings, self.staging)
        self.published = True
        return self._go_live(version)

    def _customers(
        self,
        src: Source,
        layout: Layout,
        id_column: str,
        zip_column: str | None,
        hasher,
        erased: set[str],
    ) -> CustomerValidator:
        """Validate the customers file into the staging folder; returns the validator (id map)."""
        try:
            return self._customers_pass(src, layout, id_column, zip_column, hasher, erased, False)
        except NeedExactRows:  # a row with the wrong number of fields: number rows exactly
            return self._customers_pass(src, layout, id_column, zip_column, hasher, erased, True)

    def _customers_pass(
        self,
        src: Source,
        layout: Layout,
        id_column: str,
        zip_column: str | None,
        hasher,
        erased: set[str],
        exact: bool,
    ) -> CustomerValidator:
        report = self.report
        assert self.staging is not None
        wanted = [
            c for c in layout.columns if c not in self.declared or self.declared[c].kind != "skip"
        ]
        reader = BatchReader(src, layout, wanted, exact=exact)
        log = ErrorLog()
        validator: CustomerValidator | None = None
        writes = Serial("crm-parquet")  # compression overlaps the validation of the next block
        try:
            for batch, rows in reader:
                if validator is None:
                    plan = self._plan(batch.slice(0, SAMPLE_ROWS), layout, id_column, zip_column)
                    report["columns"] = plan.describe()
                    validator = CustomerValidator(plan, hasher, erased, log)
                    self.plan = plan
                    self.parquet = parquet_writer(
                        self.staging.path / CUSTOMERS, plan.arrow_schema()
                    )
                assert self.parquet is not None  # opened with the validator, on the first batch
                writes.submit(self.parquet.write_batch, validator.process(batch, rows))
                self._renew()
            writes.close()
        except BaseException:
            with contextlib.suppress(Exception):
                writes.close()
            if self.parquet is not None:
                self.parquet.close()
                self.parquet = None
            raise
        for bad in reader.invalid:
            log.add(
                bad.row,
                None,
                WRONG_FIELDS,
                detail=f"expected {bad.expected} fields, found {bad.found}",
            )
        log.errors.sort(key=lambda e: e["row"] or 0)
        read = (validator.rows_read if validator else 0) + len(reader.invalid)
        rejected = (validator.rows_rejected if validator else 0) + len(reader.invalid)
        report.update(
            rows_read=read,
            rows_imported=validator.rows_imported if validator else 0,
            rows_rejected=rejected,
            rows_skipped_erased=validator.rows_erased if validator else 0,
            rows_blank=reader.blank_rows,
            **log.as_dict(),
        )
        if validator is None:
            what = "no data rows, only blank lines" if reader.blank_rows else "no data rows"
            if reader.invalid:
                what = f"no readable data rows ({len(reader.invalid)} rows with the wrong number of fields)"
            raise self._reject(
                f"customers file {src.name!r} has {what} (header: {', '.join(layout.columns[:10])})"
            )
        self._check_share(rejected, read, "customers file", log)
        if validator.rows_imported == 0:
            raise self._reject(f"customers file {src.name!r}: no row could be imported")
        assert self.parquet is not None
        self.parquet.close()
        self.parquet = None
        return validator

    def _manifest(self, content_hash: str) -> dict:
        """What is kept with the version: the report without cell values (they may be personal)."""
        report = self.report
        assert self.plan is not None  # the customers pass made it before any manifest is written

        def scrub(errors: list[dict]) -> list[dict]:
            return [{k: v for k, v in e.items() if k != "value"} for e in errors]

        manifest = {
            **{
                k: v
                for k, v in report.items()
                if k not in ("live_version", "previous_version", "status", "message")
            },
            "errors": scrub(report["errors"]),
            "content_hash": content_hash,
            "created_at": time.time(),
            "attributes": self.plan.attribute_names,
            "types": self.plan.attribute_types(),
            "options": self.options.fingerprint(),
        }
        if report["holdings"]:
            manifest["holdings"] = {
                **report["holdings"],
                "errors": scrub(report["holdings"]["errors"]),
            }
        return manifest

    def _go_live(self, version: str) -> dict:
        report, name = self.report, self.tenant.name
        assert self.sid is not None
        previous = serving.go_live(self.r, name, self.sid)
        if previous and previous != self.sid:
            serving.drop_namespace(self.r, name, previous)
        previous_version = serving.version_of(previous)
        removed = prune(
            self.settings, name, self.options.keep_versions, {version, previous_version or ""}
        )
        report.update(
            status="imported",
            version=version,
            live_version=version,
            previous_version=previous_version,
            versions_pruned=removed,
            message=f"{version} is live with {report['rows_imported']} customers",
            seconds=round(time.monotonic() - self.started, 3),
        )
        return report

    # -- pieces ---------------------------------------------------------------------------
    def _renew(self) -> None:
        if self.lock is not None:
            self.lock.renew()

    def _check_share(self, rejected: int, read: int, what: str, log: ErrorLog) -> None:
        limit = self.options.max_reject_rate
        if read and rejected > limit * read:
            top = ", ".join(f"{reason}: {n}" for reason, n in log.counts.most_common(3))
            raise self._reject(
                f"{what}: {rejected} of {read} rows ({rejected / read:.0%}) were rejected, more than the "
                f"{limit:.0%} allowed ({top}); see errors"
            )

    def _id_column(self, layout: Layout, src: Source) -> str:
        wanted = self.options.id_column
        if wanted in layout.columns:
            return wanted
        folded = [c for c in layout.columns if c.lower() == wanted.lower()]
        if len(folded) == 1:
            return folded[0]
        close = difflib.get_close_matches(wanted, layout.columns, n=3, cutoff=0.6)
        hint = (
            f"; did you mean {' or '.join(repr(c) for c in close)} (--id-column)?"
            if close
            else " (name it with --id-column)"
        )
        raise CrmError(
            f"customers file {src.name!r} has no id column {wanted!r}; its columns are "
            f"{', '.join(repr(c) for c in layout.columns[:20])}{hint}"
        )

    def _zip_column(self, layout: Layout) -> str | None:
        wanted = self.options.zip_column
        if wanted:
            if wanted not in layout.columns:
                raise CrmError(
                    f"customers file has no ZIP column {wanted!r} (--zip-column); its columns are {', '.join(layout.columns[:20])}"
                )
            return wanted
        lower = {c.lower(): c for c in layout.columns}
        found = next((lower[c] for c in ZIP_CANDIDATES if c in lower), None)
        if found is None:
            self.report["warnings"].append(
                "no ZIP column found: customers get no ZIP enrichment (--zip-column)"
            )
        return found

    def _plan(
        self, sample: pa.RecordBatch, layout: Layout, id_column: str, zip_column: str | None
    ) -> CustomerPlan:
        names = sample.schema.names
        unknown = [c for c in self.declared if c not in layout.columns]
        if unknown:
            raise CrmError(
                f"--types names column {', '.join(repr(c) for c in unknown)}, which the customers file does not have"
            )
        fixed = [c for c in self.declared if c in (id_column, zip_column)]
        if fixed:
            raise CrmError(f"--types cannot retype the id or ZIP column ({', '.join(fixed)})")
        for n in names:  # Parquet may bring types that have no place in a flat profile
            t = sample.schema.field(n).type
            if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
                raise CrmError(
                    f"column {n!r} has the type {t}, which a CRM profile cannot hold; "
                    f"flatten it or leave it out (--types {n}=skip)"
                )
        columns: list[tuple[str, ColumnType, str]] = []
        skipped = [c for c, t in self.declared.items() if t.kind == "skip"]
        for n in names:
            if n in (id_column, zip_column) or n in skipped:
                continue
            if n in RESERVED:
                raise CrmError(
                    f"column {n!r} clashes with a column the import creates; rename it or skip it (--types {n}=skip)"
                )
            if n in self.declared:
                columns.append((n, self.declared[n], "declared"))
            else:
                columns.append((n, infer_type(sample.column(n)), "inferred"))
        plan = CustomerPlan(
            id_column, zip_column, self.options.country, columns, self.derived, skipped
        )
        check_columns(self.derived, {n: t.kind for n, t, _ in columns})
        return plan
